"""L2-penalised logistic regression by damped Newton steps: the package's one logistic solver.

Objective (the same as scikit-learn's ``LogisticRegression(penalty="l2", C=C)``, whose intercept
is not penalised)::

    minimise over (w, b):   ½‖w‖² + C Σ_i [log(1 + e^{z_i}) − y_i z_i],   z = Xw + b.

It is strictly convex in w and convex in b, so Newton's method with the exact Hessian and an
Armijo backtracking line search converges to the unique minimiser (when both classes are
present). Used by the e-valuator step models (:mod:`ctd_stats.online.evaluator`; Sadhuka et al.
2025, fitted as in the monitoring paper's reference code) and by the safety probe
(``probes.linear.fit_logistic``; the CTD paper's linear probe). numpy only, float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from ._repr import result_repr
from ._validation import (
    FloatArray,
    as_binary_array,
    as_float_array,
    check_positive_finite,
    check_positive_int,
)

__all__ = ["LogisticFit", "fit_logistic_l2"]


@dataclass(frozen=True)
class LogisticFit:
    """Minimiser of ½‖w‖² + C Σ_i [log(1 + e^{z_i}) − y_i z_i], z = Xw + b (b unpenalised)."""

    coef: FloatArray
    intercept: float
    n_iter: int
    converged: bool

    def __repr__(self) -> str:
        head = f"converged={self.converged}, n_iter={self.n_iter}"
        return result_repr(self, head, ["intercept", "coef"])


def fit_logistic_l2(
    x: ArrayLike, y: ArrayLike, *, C: float = 1.0, max_iter: int = 100, tol: float = 1e-10
) -> LogisticFit:
    """L2-penalised logistic regression (see the module docstring for the objective).

    Stops when ``max |∇|`` < ``tol``·max(1, C·n) or a Newton step no longer moves the parameters.
    Raises ``ValueError`` when ``y`` is not 0/1, has one class only, or does not match ``x``;
    ``C`` must be a positive finite number.
    """
    X = as_float_array(x, "x", ndim=2)
    t = as_binary_array(y, "y").astype(np.float64)
    if X.shape[0] != len(t):
        raise ValueError(f"y: length {len(t)} does not match x ({X.shape[0]} rows)")
    if t.min() == t.max():
        raise ValueError("y: needs both classes (0 and 1)")
    C = check_positive_finite(C, "C")
    max_iter = check_positive_int(max_iter, "max_iter")
    tol = check_positive_finite(tol, "tol")
    return _fit_logistic_l2(X, t, C, max_iter, tol)


def _fit_logistic_l2(
    X: FloatArray, t: FloatArray, C: float, max_iter: int, tol: float
) -> LogisticFit:
    """Kernel of :func:`fit_logistic_l2`: trusts float64 X (n, d), 0/1 float t with both classes."""
    n, d = X.shape
    A = np.hstack([X, np.ones((n, 1))])
    theta = np.zeros(d + 1)
    reg = np.ones(d + 1)
    reg[-1] = 0.0  # the intercept is not penalised (as scikit-learn)

    def objective(th: FloatArray) -> float:
        z = A @ th
        return float(0.5 * np.sum(reg * th * th) + C * np.sum(np.logaddexp(0.0, z) - t * z))

    f = objective(theta)
    converged = False
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007
        z = A @ theta
        p = special.expit(z)
        grad = reg * theta + C * (A.T @ (p - t))
        if np.max(np.abs(grad)) < tol * max(1.0, C * n):
            converged = True
            break
        w = C * p * (1.0 - p)
        hess = (A.T * w) @ A + np.diag(reg)
        hess[-1, -1] += 1e-12  # keeps the system solvable if all weights underflow
        step = np.linalg.solve(hess, grad)
        size = 1.0
        while True:  # Armijo backtracking: Newton steps can overshoot far from the optimum
            cand = theta - size * step
            f_new = objective(cand)
            if f_new <= f - 1e-4 * size * float(grad @ step) or size < 1e-10:
                break
            size *= 0.5
        theta, f = cand, f_new
        if np.max(np.abs(size * step)) < 1e-14:
            converged = True
            break
    return LogisticFit(
        coef=theta[:-1].copy(), intercept=float(theta[-1]), n_iter=it, converged=converged
    )
