"""Likelihood-ratio models of a trajectory prefix: the e-valuator and the exact change point.

A model maps trajectories to per-step log likelihood ratios log M_t of the prefix s_{1:t} under
"incorrect" (H1) versus "correct" (H0); any object with ``log_ratio(trajectories) -> (N,)``
satisfies :class:`LikelihoodRatioModel`. Everything is in LOG space.

* :class:`EValuatorModel` — e-valuator (Sadhuka et al. 2025; monitoring paper §4.2): one
  L2-penalised logistic regression per step t on the standardised FULL prefix s_{1:t} (not a
  product of per-step ratios), trained on the calibration trajectories that reach step t; a step
  model needs at least ``min_per_class`` (5) trajectories of each class (step 1 must have them,
  later steps without carry the last value); probabilities clipped to [1e−6, 1 − 1e−6];
  M_t = (q₀/q₁)·(π₁/π₀) with q the fitted P(label | prefix) and π the class frequencies at step 1.
  The logistic regression is the package's solver :func:`ctd_stats.logistic.fit_logistic_l2`
  (scikit-learn's default ``LogisticRegression()``: L2, C = 1, intercept not penalised). A
  fitted model serialises exactly (``to_json`` / ``from_json``), step models included.
* :class:`ChangePointModel` — the EXACT likelihood ratio when correct trajectories have iid
  steps from a known density f₀ and incorrect ones switch to f₁ at a geometric change point.
  It is a test martingale under H0, the right object for checking Ville's inequality.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike

from .._repr import result_repr
from .._serialize import JSONSerializable, array_sha256, exact_eq
from .._validation import check_choice, check_level, check_positive_finite, check_positive_int
from ..logistic import fit_logistic_l2
from ..typing import FloatArray
from .trajectories import Trajectories, check_trajectories

__all__ = ["ChangePointModel", "EValuatorModel", "LikelihoodRatioModel", "StepModel"]


@runtime_checkable
class LikelihoodRatioModel(Protocol):
    """Anything that maps trajectories to per-step log likelihood ratios log M_{i,t}."""

    def log_ratio(self, trajectories: Trajectories) -> FloatArray:
        """(N,) log M_{i,t} aligned with ``trajectories.scores`` (prefix up to and incl. t)."""
        ...


@exact_eq
@dataclass(frozen=True)
class StepModel(JSONSerializable, kind="ctd_stats.StepModel"):
    """The logistic model of step ``step`` (1-based) on the standardised prefix s_{1:step}."""

    step: int
    mean: FloatArray
    scale: FloatArray
    coef: FloatArray
    intercept: float
    n_correct: int
    n_incorrect: int
    log_prior_odds: float

    def logit_correct(self, prefixes: FloatArray) -> FloatArray:
        """z = logit P(correct | prefix) for prefixes of shape (m, step)."""
        out: FloatArray = ((prefixes - self.mean) / self.scale) @ self.coef + self.intercept
        return out

    def __repr__(self) -> str:
        return (
            f"StepModel(step={self.step}, n_correct={self.n_correct}, "
            f"n_incorrect={self.n_incorrect}, intercept={self.intercept:.6g})"
        )


@exact_eq
@dataclass(frozen=True)
class EValuatorModel(JSONSerializable, kind="ctd_stats.EValuatorModel"):
    """Fitted e-valuator likelihood-ratio model (one logistic regression per step).

    log M_t = log q₀(s_{1:t}) − log q₁(s_{1:t}) + log(π₁/π₀), q clipped to [clip, 1 − clip];
    steps without a model carry the last value. An ESTIMATED ratio: Ville's 1/level threshold
    is not guaranteed to control false alarms with it (use PAC or conformal thresholds).
    ``n`` and ``calibration_sha256`` identify the fitting trajectories (sha256 of their scores).
    """

    step_models: tuple[StepModel, ...]
    clip: float
    prior: str
    n: int | None = None
    calibration_sha256: str | None = None

    def _json_meta(self) -> dict[str, Any]:
        return {
            "guarantee": (
                "none by itself: an estimated likelihood ratio; calibrate its threshold "
                "(pac_threshold / conformal_threshold) on held-out correct trajectories"
            ),
            "n": self.n,
            "calibration_sha256": self.calibration_sha256,
            "settings": {"clip": self.clip, "prior": self.prior},
        }

    def __repr__(self) -> str:
        steps = [m.step for m in self.step_models]
        return result_repr(
            "EValuatorModel",
            f"{len(steps)} step models",
            [
                ("steps", f"{steps[0]}..{steps[-1]}" if steps else "none"),
                ("prior", self.prior),
                ("clip", self.clip),
                ("n", self.n),
            ],
        )

    @classmethod
    def fit(
        cls,
        trajectories: Trajectories,
        *,
        min_per_class: int = 5,
        C: float = 1.0,
        clip: float = 1e-6,
        max_step: int | None = None,
        prior: str = "first_step",
    ) -> EValuatorModel:
        """Fit on labelled calibration trajectories (1 = correct, 0 = incorrect).

        ``prior="first_step"`` (the monitoring paper's current reference code): π = class
        frequencies among all calibration trajectories (those reaching step 1).
        ``prior="per_step"``: π_t = class frequencies among the trajectories reaching step t (an
        earlier version of the reference code, the one whose MATH notebook produced the
        published numbers).

        Raises ``ValueError`` when step 1 has fewer than ``min_per_class`` trajectories of
        either class (e.g. labels of one class only).
        """
        return fit_evaluator(
            trajectories, *check_fit_settings(min_per_class, C, clip, max_step, prior)
        )

    def log_ratio(self, trajectories: Trajectories) -> FloatArray:
        """(N,) log M_{i,t} for every step of every trajectory."""
        check_trajectories(trajectories)
        bound = math.log((1.0 - self.clip) / self.clip)
        values = np.full(trajectories.n_steps, np.nan)
        for m in self.step_models:
            rows, X = trajectories.prefixes(m.step)
            if len(rows) == 0:
                continue
            z = np.clip(m.logit_correct(X), -bound, bound)
            values[trajectories.offsets[rows] + m.step - 1] = -z + m.log_prior_odds
        # carry the last value forward within each trajectory (step 1 always has a model)
        idx = np.where(np.isnan(values), 0, np.arange(trajectories.n_steps))
        idx = np.maximum.accumulate(idx)
        return values[idx]


def fit_evaluator(
    trajectories: Trajectories,
    min_per_class: int,
    C: float,
    clip: float,
    max_step: int | None,
    prior: str,
    *,
    name: str = "trajectories",
) -> EValuatorModel:
    """Kernel of :meth:`EValuatorModel.fit` for settings from :func:`check_fit_settings`.

    The data conditions are checked here and reported under ``name``, the caller's argument.
    """
    labels = check_trajectories(trajectories, name).require_labels(name)
    n1 = int(labels.sum())
    n0 = len(labels) - n1
    if min(n0, n1) < min_per_class:
        raise ValueError(
            f"{name}: step 1 needs at least {min_per_class} trajectories of each class, "
            f"got {n1} correct and {n0} incorrect"
        )
    last = int(trajectories.lengths.max())
    if max_step is not None:
        last = min(last, max_step)
    models: list[StepModel] = []
    for t in range(1, last + 1):
        rows, X = trajectories.prefixes(t)
        y = labels[rows]
        c1 = int(y.sum())
        c0 = len(y) - c1
        if min(c0, c1) < min_per_class:
            continue
        mean = X.mean(axis=0)
        scale = X.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        fit = fit_logistic_l2((X - mean) / scale, y, C=C, max_iter=100, tol=1e-10)
        models.append(
            StepModel(
                step=t,
                mean=mean,
                scale=scale,
                coef=fit.coef,
                intercept=fit.intercept,
                n_correct=c1,
                n_incorrect=c0,
                log_prior_odds=math.log(n1 / n0 if prior == "first_step" else c1 / c0),
            )
        )
    return EValuatorModel(
        step_models=tuple(models),
        clip=clip,
        prior=prior,
        n=trajectories.n_trajectories,
        calibration_sha256=array_sha256(trajectories.scores),
    )


def check_fit_settings(
    min_per_class: int, C: float, clip: float, max_step: int | None, prior: str
) -> tuple[int, float, float, int | None, str]:
    """Validate the e-valuator settings once (public edge of :meth:`EValuatorModel.fit`)."""
    check_choice(prior, "prior", ("first_step", "per_step"))
    min_per_class = check_positive_int(min_per_class, "min_per_class")
    clip = check_level(clip, "clip")
    if clip >= 0.5:
        raise ValueError(f"clip: must be < 0.5, got {clip}")
    C = check_positive_finite(C, "C")
    step = None if max_step is None else check_positive_int(max_step, "max_step")
    return min_per_class, C, clip, step, prior


# --------------------------------------------------------------------------- change-point model
class _HasLogPdf(Protocol):
    def logpdf(self, x: FloatArray) -> ArrayLike: ...


@dataclass(frozen=True)
class ChangePointModel:
    """Exact likelihood ratio for a geometric change point between two known densities.

    H0 (correct): s_1, s_2, ... iid ``pre``. H1 (incorrect): iid ``pre`` before a change point
    τ ~ Geometric(``rho``) on {1, 2, ...}, iid ``post`` from step τ on. Then
    M_t = Σ_{k≤t} ρ(1−ρ)^{k−1} Π_{j=k}^{t} f₁(s_j)/f₀(s_j) + (1−ρ)^t is the likelihood ratio of the
    prefix: a nonnegative martingale with M_0 = 1 under H0, so P_H0(∃t: M_t ≥ 1/α) ≤ α.
    ``pre`` / ``post`` are objects with a vectorised ``logpdf`` (e.g. frozen scipy distributions).
    """

    pre: _HasLogPdf
    post: _HasLogPdf
    rho: float

    def __post_init__(self) -> None:
        check_level(self.rho, "rho")

    def log_ratio(self, trajectories: Trajectories) -> FloatArray:
        s = check_trajectories(trajectories).scores
        log_r = self._log_density_ratio(s, "trajectories")
        n, tmax = trajectories.n_trajectories, int(trajectories.lengths.max())
        R = np.zeros((n, tmax))
        R[trajectories.trajectory_index, trajectories.step_index] = log_r
        log_a = np.full(n, -np.inf)
        out = np.empty((n, tmax))
        for p in range(tmax):  # p = t − 1
            log_a, out[:, p] = self._advance(log_a, R[:, p], p)
        res: FloatArray = out[trajectories.trajectory_index, trajectories.step_index]
        return res

    def log_ratio_step(self, log_a: float, t: int, x: float) -> tuple[float, float]:
        """One step of the recursion behind :meth:`log_ratio`, for streaming in O(1).

        From log A_{t−1} (``-inf`` before the first score) and the score ``x`` at 0-based step
        ``t``, returns (log A_t, log M_t) with A_t = Σ_{k≤t} ρ(1−ρ)^{k−1} Π_{j=k}^{t} f₁/f₀(s_j),
        so M_t = A_t + (1−ρ)^t: (log A_t) is a sufficient statistic of the prefix. The values
        are those of :meth:`log_ratio` on the whole prefix, bit for bit.
        """
        log_r = self._log_density_ratio(np.array([x], dtype=np.float64), "x")
        new_a, log_m = self._advance(np.array([log_a]), log_r, t)
        return float(new_a[0]), float(log_m[0])

    def _log_density_ratio(self, s: FloatArray, name: str) -> FloatArray:
        log_r = np.asarray(self.post.logpdf(s), dtype=np.float64) - np.asarray(
            self.pre.logpdf(s), dtype=np.float64
        )
        if np.isnan(log_r).any():
            raise ValueError(f"{name}: a score has zero density under both pre and post")
        return log_r

    def _advance(
        self, log_a: FloatArray, log_r: FloatArray, p: int
    ) -> tuple[FloatArray, FloatArray]:
        """log A and log M after 0-based step p: A_t = r_t (A_{t−1} + ρ(1−ρ)^{t−1})."""
        log_rho, log_stay = math.log(self.rho), math.log1p(-self.rho)
        log_a = log_r + np.logaddexp(log_a, log_rho + p * log_stay)
        return log_a, np.logaddexp(log_a, (p + 1) * log_stay)
