"""Linear probes (logistic in numpy, ridge in torch on CPU or GPU), results as plain numpy.

* :func:`fit_logistic` — the safety probe: L2-regularised logistic regression with an unpenalised
  intercept, minimising ``C * sum(log-loss) + ||w||² / 2`` exactly as scikit-learn's
  ``LogisticRegression(C=C)``; solved in float64 by the package's one logistic solver,
  :func:`ctd_stats.logistic.fit_logistic_l2` (damped Newton, numpy). No feature scaling.
* :func:`fit_ridge` — the DV probe: ridge regression with an unpenalised intercept, closed form
  ``w = (Xcᵀ Xc + α I)⁻¹ Xcᵀ yc``, ``b = ȳ − x̄ᵀw`` (scikit-learn's ``Ridge(alpha)``).
* :func:`auroc` — the area under the ROC curve (ties counted one half), for layer selection.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import ArrayLike

from ctd_stats._validation import FloatArray, as_binary_array, as_float_array, check_same_length
from ctd_stats.cascade.metrics import auroc as cascade_auroc
from ctd_stats.logistic import _fit_logistic_l2

__all__ = ["LogisticProbe", "RidgeProbe", "auroc", "fit_logistic", "fit_ridge"]


def _features(X: ArrayLike, name: str = "X") -> FloatArray:
    return as_float_array(X, name, ndim=2)


def _device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass(frozen=True)
class LogisticProbe:
    """A fitted logistic probe; ``predict_proba`` gives P(y = 1 | x)."""

    coef: FloatArray
    intercept: float
    C: float
    n_iter: int
    converged: bool

    def decision_function(self, X: ArrayLike) -> FloatArray:
        x = _features(X)
        if x.shape[1] != self.coef.shape[0]:
            raise ValueError(f"X: expected {self.coef.shape[0]} features, got {x.shape[1]}")
        return np.asarray(x @ self.coef + self.intercept, dtype=np.float64)

    def predict_proba(self, X: ArrayLike) -> FloatArray:
        z = self.decision_function(X)
        return np.asarray(0.5 * (1.0 + np.tanh(0.5 * z)), dtype=np.float64)

    def predict(self, X: ArrayLike) -> FloatArray:
        return (self.predict_proba(X) >= 0.5).astype(np.float64)


@dataclass(frozen=True)
class RidgeProbe:
    """A fitted ridge regression (the DV probe)."""

    coef: FloatArray
    intercept: float
    alpha: float

    def predict(self, X: ArrayLike) -> FloatArray:
        x = _features(X)
        if x.shape[1] != self.coef.shape[0]:
            raise ValueError(f"X: expected {self.coef.shape[0]} features, got {x.shape[1]}")
        return np.asarray(x @ self.coef + self.intercept, dtype=np.float64)


def fit_logistic(
    X: ArrayLike,
    y: ArrayLike,
    *,
    C: float = 1.0,
    max_iter: int = 100,
    tol: float = 1e-8,
) -> LogisticProbe:
    """Fit the L2 logistic regression (see module docstring); ``y`` must hold 0/1 labels.

    Solved by :func:`ctd_stats.logistic.fit_logistic_l2` (damped Newton, float64, numpy), the
    package's one logistic solver; stops when max |∇| < ``tol``·max(1, C·n).
    """
    x = _features(X)
    labels = as_binary_array(y, "y")
    check_same_length("X", x, "y", labels)
    if isinstance(C, bool) or not (isinstance(C, (int, float)) and np.isfinite(C) and C > 0):
        raise ValueError(f"C: must be a positive finite number, got {C!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter: must be a positive integer, got {max_iter!r}")
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise ValueError(f"tol: must be a positive number, got {tol!r}")
    if labels.min() == labels.max():
        raise ValueError("y: both classes (0 and 1) must be present")
    # validated above: the solver's kernel trusts its inputs
    fit = _fit_logistic_l2(x, labels.astype(np.float64), float(C), max_iter, float(tol))
    return LogisticProbe(
        coef=np.asarray(fit.coef, dtype=np.float64),
        intercept=fit.intercept,
        C=float(C),
        n_iter=fit.n_iter,
        converged=fit.converged,
    )


def fit_ridge(
    X: ArrayLike,
    y: ArrayLike,
    *,
    alpha: float = 1.0,
    device: str | torch.device | None = None,
) -> RidgeProbe:
    """Closed-form ridge regression with an unpenalised intercept (``Ridge(alpha=alpha)``)."""
    x = _features(X)
    target = as_float_array(y, "y", ndim=1)
    check_same_length("X", x, "y", target)
    if not (isinstance(alpha, (int, float)) and np.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"alpha: must be a non-negative finite number, got {alpha!r}")
    dev = _device(device)
    Xt = torch.as_tensor(x, dtype=torch.float64, device=dev)
    yt = torch.as_tensor(target, dtype=torch.float64, device=dev)
    x_mean = Xt.mean(dim=0)
    y_mean = yt.mean()
    Xc = Xt - x_mean
    yc = yt - y_mean
    gram = Xc.T @ Xc + float(alpha) * torch.eye(x.shape[1], dtype=torch.float64, device=dev)
    w = (
        torch.linalg.lstsq(gram, Xc.T @ yc).solution
        if alpha == 0
        else torch.linalg.solve(gram, Xc.T @ yc)
    )
    b = y_mean - x_mean @ w
    return RidgeProbe(
        coef=np.asarray(w.cpu().numpy(), dtype=np.float64), intercept=float(b), alpha=float(alpha)
    )


def auroc(y: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve (ties count ½) as a float: :func:`ctd_stats.cascade.auroc`."""
    return float(cascade_auroc(y, scores))
