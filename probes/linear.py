"""Linear probes in torch (CPU or GPU), results as plain numpy.

* :func:`fit_logistic` — the safety probe: L2-regularised logistic regression with an unpenalised
  intercept, minimising ``C * sum(log-loss) + ||w||² / 2`` exactly as scikit-learn's
  ``LogisticRegression(C=C)`` (lbfgs); solved by damped Newton (default) or torch L-BFGS, in
  float64. No feature scaling (SPEC §5).
* :func:`fit_ridge` — the DV probe: ridge regression with an unpenalised intercept, closed form
  ``w = (Xcᵀ Xc + α I)⁻¹ Xcᵀ yc``, ``b = ȳ − x̄ᵀw`` (scikit-learn's ``Ridge(alpha)``).
* :func:`auroc` — the area under the ROC curve (ties counted one half), for layer selection.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import ArrayLike

from ctd_stats._validation import (
    FloatArray,
    as_binary_array,
    as_float_array,
    check_choice,
    check_same_length,
)
from ctd_stats.cascade.metrics import auroc as cascade_auroc

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


def _objective(w: torch.Tensor, Xt: torch.Tensor, yt: torch.Tensor, lam: float) -> torch.Tensor:
    z = Xt @ w
    loss = torch.nn.functional.softplus(z) - yt * z
    return loss.sum() + 0.5 * lam * (w[:-1] ** 2).sum()


def fit_logistic(
    X: ArrayLike,
    y: ArrayLike,
    *,
    C: float = 1.0,
    solver: str = "newton",
    max_iter: int = 100,
    tol: float = 1e-8,
    device: str | torch.device | None = None,
) -> LogisticProbe:
    """Fit the L2 logistic regression (see module docstring); ``y`` must hold 0/1 labels."""
    x = _features(X)
    labels = as_binary_array(y, "y")
    check_same_length("X", x, "y", labels)
    check_choice(solver, "solver", ("newton", "lbfgs"))
    if not (isinstance(C, (int, float)) and np.isfinite(C) and C > 0):
        raise ValueError(f"C: must be a positive finite number, got {C!r}")
    if max_iter < 1:
        raise ValueError(f"max_iter: must be positive, got {max_iter!r}")
    if labels.min() == labels.max():
        raise ValueError("y: both classes (0 and 1) must be present")
    dev = _device(device)
    n, d = x.shape
    Xt = torch.cat(
        [torch.as_tensor(x, dtype=torch.float64), torch.ones(n, 1, dtype=torch.float64)], dim=1
    ).to(dev)
    yt = torch.as_tensor(labels, dtype=torch.float64, device=dev)
    lam = 1.0 / float(C)
    reg = torch.full((d + 1,), lam, dtype=torch.float64, device=dev)
    reg[-1] = 0.0
    w = torch.zeros(d + 1, dtype=torch.float64, device=dev)
    converged = False
    it = 0
    if solver == "newton":
        f = _objective(w, Xt, yt, lam)
        for step_no in range(1, max_iter + 1):
            it = step_no
            p = torch.sigmoid(Xt @ w)
            grad = Xt.T @ (p - yt) + reg * w
            if float(grad.abs().max()) <= tol * max(1.0, n):
                converged = True
                break
            hess = (Xt * (p * (1 - p)).unsqueeze(1)).T @ Xt + torch.diag(reg)
            hess = hess + 1e-12 * torch.eye(d + 1, dtype=torch.float64, device=dev)
            step = torch.linalg.solve(hess, grad)
            t = 1.0
            while True:  # backtracking (Armijo) line search
                w_new = w - t * step
                f_new = _objective(w_new, Xt, yt, lam)
                if float(f_new) <= float(f) - 1e-4 * t * float(grad @ step) or t < 1e-10:
                    break
                t *= 0.5
            w, f = w_new, f_new
    else:
        w.requires_grad_(True)
        opt = torch.optim.LBFGS(
            [w],
            max_iter=max_iter,
            tolerance_grad=tol,
            tolerance_change=0.0,
            history_size=20,
            line_search_fn="strong_wolfe",
        )

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = _objective(w, Xt, yt, lam)
            loss.backward()  # type: ignore[no-untyped-call]
            return loss

        opt.step(closure)  # type: ignore[no-untyped-call]
        state = opt.state[w]
        it = int(state.get("n_iter", max_iter))
        w = w.detach()
        p = torch.sigmoid(Xt @ w)
        grad = Xt.T @ (p - yt) + reg * w
        converged = float(grad.abs().max()) <= max(tol * n, 1e-6 * n)
    coef = w.detach().cpu().numpy()
    return LogisticProbe(
        coef=np.asarray(coef[:-1], dtype=np.float64),
        intercept=float(coef[-1]),
        C=float(C),
        n_iter=it,
        converged=converged,
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
