"""Linear probes (logistic in numpy, ridge in torch on CPU or GPU), results as plain numpy.

* :func:`fit_logistic` — the safety probe: L2-regularised logistic regression with an unpenalised
  intercept, minimising ``C * sum(log-loss) + ||w||² / 2`` exactly as scikit-learn's
  ``LogisticRegression(C=C)``; solved in float64 by the package's one logistic solver,
  :func:`ctd_stats.logistic.fit_logistic_l2` (damped Newton, numpy). No feature scaling.
* :func:`fit_ridge` — the DV probe: ridge regression with an unpenalised intercept, closed form
  ``w = (Xcᵀ Xc + λ I)⁻¹ Xcᵀ yc``, ``b = ȳ − x̄ᵀw`` with the L2 ``penalty`` λ (scikit-learn's
  ``Ridge(alpha=λ)``; not called ``alpha`` here, where α is the risk a calibration controls).
* :func:`auroc` — the area under the ROC curve (ties counted one half), for layer selection.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import ArrayLike

from ctd_stats.cascade.metrics import auroc as cascade_auroc
from ctd_stats.logistic import fit_logistic_l2
from ctd_stats.typing import FloatArray

__all__ = ["LogisticProbe", "RidgeProbe", "auroc", "fit_logistic", "fit_ridge"]


def _real(value: ArrayLike, name: str, ndim: int) -> FloatArray:
    """``value`` as a finite, non-empty float64 array of ``ndim`` dimensions (errors name it)."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected numbers, got an array of dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimension(s), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: must not be empty")
    if np.isnan(arr).any():
        raise ValueError(f"{name}: contains NaN")
    if np.isinf(arr).any():
        raise ValueError(f"{name}: contains infinite values")
    return arr


def _features(X: ArrayLike) -> FloatArray:
    return _real(X, "X", 2)


def _linear(X: ArrayLike, coef: FloatArray, intercept: float) -> FloatArray:
    """``X @ coef + intercept`` for features ``X`` of the fitted width."""
    x = _features(X)
    if x.shape[1] != coef.shape[0]:
        raise ValueError(f"X: expected {coef.shape[0]} features, got {x.shape[1]}")
    return np.asarray(x @ coef + intercept, dtype=np.float64)


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
        return _linear(X, self.coef, self.intercept)

    def predict_proba(self, X: ArrayLike) -> FloatArray:
        z = self.decision_function(X)
        return np.asarray(0.5 * (1.0 + np.tanh(0.5 * z)), dtype=np.float64)

    def predict(self, X: ArrayLike) -> FloatArray:
        return (self.predict_proba(X) >= 0.5).astype(np.float64)


@dataclass(frozen=True)
class RidgeProbe:
    """A fitted ridge regression (the DV probe); ``penalty`` is its L2 strength λ."""

    coef: FloatArray
    intercept: float
    penalty: float

    def predict(self, X: ArrayLike) -> FloatArray:
        return _linear(X, self.coef, self.intercept)


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
    package's one logistic solver; stops when ``max |∇|`` < ``tol``·max(1, C·n).
    """
    # the solver checks y (0/1, both classes, one per row of X), C, max_iter and tol
    fit = fit_logistic_l2(_features(X), y, C=C, max_iter=max_iter, tol=tol)
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
    penalty: float = 1.0,
    device: str | torch.device | None = None,
) -> RidgeProbe:
    """Closed-form ridge regression, unpenalised intercept (scikit-learn ``Ridge(alpha=penalty)``).

    ``penalty`` is the L2 strength λ >= 0 (0: least squares, solved by ``lstsq``).
    """
    x = _features(X)
    target = _real(y, "y", 1)
    if len(target) != len(x):
        raise ValueError(f"y: length {len(target)} does not match X (length {len(x)})")
    if isinstance(penalty, bool) or not (
        isinstance(penalty, (int, float)) and np.isfinite(penalty) and penalty >= 0
    ):
        raise ValueError(f"penalty: must be a non-negative finite number, got {penalty!r}")
    dev = _device(device)
    Xt = torch.as_tensor(x, dtype=torch.float64, device=dev)
    yt = torch.as_tensor(target, dtype=torch.float64, device=dev)
    x_mean = Xt.mean(dim=0)
    y_mean = yt.mean()
    Xc = Xt - x_mean
    yc = yt - y_mean
    gram = Xc.T @ Xc + float(penalty) * torch.eye(x.shape[1], dtype=torch.float64, device=dev)
    w = (
        torch.linalg.lstsq(gram, Xc.T @ yc).solution
        if penalty == 0
        else torch.linalg.solve(gram, Xc.T @ yc)
    )
    b = y_mean - x_mean @ w
    return RidgeProbe(
        coef=np.asarray(w.cpu().numpy(), dtype=np.float64),
        intercept=float(b),
        penalty=float(penalty),
    )


def auroc(y: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve (ties count ½) as a float: :func:`ctd_stats.cascade.auroc`."""
    return float(cascade_auroc(y, scores))
