"""E-process monitors: likelihood-ratio models of a trajectory prefix and their thresholds.

An e-process monitor computes, at every step t of a trajectory, M_t = an (estimated) likelihood
ratio of the prefix s_{1:t} under "incorrect" (H1) versus "correct" (H0), and alarms at the
first t with M_t > c (strict). Everything is computed in LOG space: models return log M_t.

Models (any object with ``log_ratio(trajectories) -> (N,) log M`` satisfies
:class:`LikelihoodRatioModel`):

* :class:`EValuatorModel` — e-valuator (Sadhuka et al. 2025): one L2-penalised logistic
  regression per step t on the standardised FULL prefix s_{1:t} (not a product of per-step
  ratios), trained on the calibration trajectories that reach step t; a step model needs at
  least ``min_per_class`` (5) trajectories of each class (step 1 must have them, later steps
  without carry the last value); probabilities clipped to [1e−6, 1 − 1e−6];
  M_t = (q₀/q₁)·(π₁/π₀) with q the fitted P(label | prefix) and π the class frequencies at step 1.
  The logistic regression is our own Newton solver (:func:`fit_logistic_l2`), matching
  scikit-learn's default ``LogisticRegression()`` (L2, C = 1, intercept not penalised).
* :class:`ChangePointModel` — the EXACT likelihood ratio when correct trajectories have iid
  steps from a known density f₀ and incorrect ones switch to f₁ at a geometric change point.
  It is a test martingale under H0, the right object for checking Ville's inequality.

Thresholds (:class:`EProcessThreshold`, alarm iff log M_t > log c):

* ``ville``: c = 1/α; P(∃t: M_t ≥ 1/α) ≤ α only if M is a true test martingale under H0
  (true for the exact change-point ratio, NOT guaranteed for an estimated e-valuator ratio);
* ``randomized_ville``: 1/α before the last step, U/α at the last step (U ~ Unif(0, 1));
* ``pac``: from held-out correct trajectories, c = the k-th order statistic of max_t M, k the
  smallest with P(Bin(n, 1 − α) ≥ k) ≤ δ; +∞ (never alarm) when no k qualifies (n too small);
  then P(false-alarm rate > α) ≤ δ over the held-out draw;
* ``conformal``: c = the ⌈(1 − α)(n + 1)⌉-th order statistic (+∞ if that exceeds n); false-alarm
  rate ≤ α in expectation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike
from scipy import special, stats

from .._validation import (
    FloatArray,
    IntArray,
    as_binary_array,
    as_float_array,
    check_choice,
    check_level,
    check_levels,
    check_positive_int,
)
from .monitors import first_alarm_from_mask
from .trajectories import Trajectories

__all__ = [
    "THRESHOLD_METHODS",
    "ChangePointModel",
    "EProcessMonitor",
    "EProcessState",
    "EProcessStep",
    "EProcessThreshold",
    "EValuatorModel",
    "FittedEProcessMonitor",
    "LikelihoodRatioModel",
    "LogisticFit",
    "StepModel",
    "conformal_threshold",
    "eprocess_first_alarms",
    "evaluator_monitor",
    "fit_logistic_l2",
    "max_log_eprocess",
    "pac_threshold",
    "randomized_ville_threshold",
    "ville_threshold",
]

THRESHOLD_METHODS: Final[tuple[str, ...]] = ("ville", "randomized_ville", "pac", "conformal")


@runtime_checkable
class LikelihoodRatioModel(Protocol):
    """Anything that maps trajectories to per-step log likelihood ratios log M_{i,t}."""

    def log_ratio(self, trajectories: Trajectories) -> FloatArray:
        """(N,) log M_{i,t} aligned with ``trajectories.scores`` (prefix up to and incl. t)."""
        ...


# --------------------------------------------------------------------------- logistic regression
@dataclass(frozen=True)
class LogisticFit:
    """Minimiser of ½‖w‖² + C Σ_i [log(1 + e^{z_i}) − y_i z_i], z = Xw + b (b unpenalised)."""

    coef: FloatArray
    intercept: float
    n_iter: int
    converged: bool


def fit_logistic_l2(
    x: ArrayLike, y: ArrayLike, *, C: float = 1.0, max_iter: int = 100, tol: float = 1e-10
) -> LogisticFit:
    """L2-penalised logistic regression by damped Newton steps (exact Hessian).

    Same objective as scikit-learn's ``LogisticRegression(penalty="l2", C=C)`` with an
    unpenalised intercept. ``y`` must contain both classes.
    """
    X = as_float_array(x, "x", ndim=2)
    t = as_binary_array(y, "y").astype(np.float64)
    if X.shape[0] != len(t):
        raise ValueError(f"y: length {len(t)} does not match x ({X.shape[0]} rows)")
    if t.min() == t.max():
        raise ValueError("y: needs both classes (0 and 1)")
    if not (isinstance(C, (int, float)) and C > 0 and math.isfinite(C)):
        raise ValueError(f"C: must be a positive finite number, got {C!r}")
    max_iter = check_positive_int(max_iter, "max_iter")
    n, d = X.shape
    A = np.hstack([X, np.ones((n, 1))])
    theta = np.zeros(d + 1)
    reg = np.ones(d + 1)
    reg[-1] = 0.0

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
        while True:
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


# --------------------------------------------------------------------------- e-valuator model
@dataclass(frozen=True)
class StepModel:
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


@dataclass(frozen=True)
class EValuatorModel:
    """Fitted e-valuator likelihood-ratio model (one logistic regression per step).

    log M_t = log q₀(s_{1:t}) − log q₁(s_{1:t}) + log(π₁/π₀), q clipped to [clip, 1 − clip];
    steps without a model carry the last value. An ESTIMATED ratio: Ville's 1/α threshold is
    not guaranteed to control false alarms with it (use PAC or conformal thresholds).
    """

    step_models: tuple[StepModel, ...]
    clip: float
    prior: str

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

        ``prior="first_step"`` (the current reference code and SPEC §7): π = class frequencies
        among all calibration trajectories (those reaching step 1). ``prior="per_step"``: π_t =
        class frequencies among the trajectories reaching step t (an earlier version of the
        reference code, the one whose MATH notebook produced the published numbers).

        Raises ``ValueError`` when step 1 has fewer than ``min_per_class`` trajectories of
        either class (e.g. labels of one class only).
        """
        labels = trajectories.require_labels()
        check_choice(prior, "prior", ("first_step", "per_step"))
        min_per_class = check_positive_int(min_per_class, "min_per_class")
        clip = check_level(clip, "clip")
        if clip >= 0.5:
            raise ValueError(f"clip: must be < 0.5, got {clip}")
        n1 = int(labels.sum())
        n0 = len(labels) - n1
        if min(n0, n1) < min_per_class:
            raise ValueError(
                f"trajectories: step 1 needs at least {min_per_class} trajectories of each class, "
                f"got {n1} correct and {n0} incorrect"
            )
        last = int(trajectories.lengths.max())
        if max_step is not None:
            last = min(last, check_positive_int(max_step, "max_step"))
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
            fit = fit_logistic_l2((X - mean) / scale, y, C=C)
            models.append(
                StepModel(
                    step=t,
                    mean=mean,
                    scale=scale,
                    coef=fit.coef,
                    intercept=fit.intercept,
                    n_correct=c1,
                    n_incorrect=c0,
                    log_prior_odds=math.log(n1 / n0)
                    if prior == "first_step"
                    else math.log(c1 / c0),
                )
            )
        return cls(step_models=tuple(models), clip=clip, prior=prior)

    def log_ratio(self, trajectories: Trajectories) -> FloatArray:
        """(N,) log M_{i,t} for every step of every trajectory."""
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
        s = trajectories.scores
        log_r = np.asarray(self.post.logpdf(s), dtype=np.float64) - np.asarray(
            self.pre.logpdf(s), dtype=np.float64
        )
        if np.isnan(log_r).any():
            raise ValueError("trajectories: a score has zero density under both pre and post")
        n, tmax = trajectories.n_trajectories, int(trajectories.lengths.max())
        R = np.zeros((n, tmax))
        R[trajectories.trajectory_index, trajectories.step_index] = log_r
        log_rho, log_stay = math.log(self.rho), math.log1p(-self.rho)
        log_a = np.full(n, -np.inf)
        out = np.empty((n, tmax))
        for p in range(tmax):  # p = t − 1
            log_a = R[:, p] + np.logaddexp(log_a, log_rho + p * log_stay)
            out[:, p] = np.logaddexp(log_a, (p + 1) * log_stay)
        res: FloatArray = out[trajectories.trajectory_index, trajectories.step_index]
        return res


# --------------------------------------------------------------------------- thresholds
@dataclass(frozen=True)
class EProcessThreshold:
    """Alarm threshold for an e-process: alarm at the first t with log M_t > ``log_threshold``.

    ``method="randomized_ville"`` uses log(U/α) at each trajectory's last step instead (U drawn
    by :func:`eprocess_first_alarms`). ``guarantee`` states what the threshold promises;
    ``log_threshold = +inf`` means never alarm. ``n`` is the number of held-out correct
    trajectories used (PAC, conformal).
    """

    log_threshold: float
    alpha: float
    method: str
    n: int | None
    delta: float | None
    guarantee: str


def ville_threshold(alpha: float) -> EProcessThreshold:
    """c = 1/α (valid when M is a test (super)martingale under H0: Ville's inequality)."""
    a = check_level(alpha, "alpha")
    return EProcessThreshold(
        log_threshold=-math.log(a),
        alpha=a,
        method="ville",
        n=None,
        delta=None,
        guarantee="P_H0(∃t: M_t ≥ 1/α) ≤ α if M is a nonnegative supermartingale with M_0 ≤ 1",
    )


def randomized_ville_threshold(alpha: float) -> EProcessThreshold:
    """1/α before the last step, U/α at the last step (randomised Ville; Ramdas & Manole)."""
    a = check_level(alpha, "alpha")
    return EProcessThreshold(
        log_threshold=-math.log(a),
        alpha=a,
        method="randomized_ville",
        n=None,
        delta=None,
        guarantee=(
            "P_H0(∃t < T: M_t ≥ 1/α or M_T ≥ U/α) ≤ α for a test supermartingale M, "
            "U ~ Unif(0, 1) independent, T a stopping time"
        ),
    )


def _held_out_values(values: ArrayLike) -> FloatArray:
    v = as_float_array(values, "max_log_values", ndim=1, finite=False)
    return np.sort(v)


def pac_threshold(
    max_log_values: ArrayLike, alpha: float, *, delta: float = 0.1
) -> EProcessThreshold:
    """PAC tolerance bound from max_t log M over held-out CORRECT trajectories.

    c = X_(k), the smallest k with P(Bin(n, 1 − α) ≥ k) ≤ δ; if none (n < log δ / log(1 − α)),
    c = +∞ (never alarm — valid, zero power). Guarantee: with probability ≥ 1 − δ over the
    held-out draw, P(max_t M_t > c | correct) ≤ α.
    """
    a = check_level(alpha, "alpha")
    d = check_level(delta, "delta")
    x = _held_out_values(max_log_values)
    n = len(x)
    k = np.arange(1, n + 1)
    ok = np.flatnonzero(stats.binom.sf(k - 1, n, 1.0 - a) <= d)
    log_c = float(x[ok[0]]) if len(ok) else math.inf
    return EProcessThreshold(
        log_threshold=log_c,
        alpha=a,
        method="pac",
        n=n,
        delta=d,
        guarantee=(
            "P(false-alarm rate > α) ≤ δ over the held-out correct trajectories "
            "(distribution-free tolerance bound); +inf when n is too small"
        ),
    )


def conformal_threshold(max_log_values: ArrayLike, alpha: float) -> EProcessThreshold:
    """Conformal threshold: the ⌈(1 − α)(n + 1)⌉-th order statistic (+∞ if beyond n).

    Guarantee: P(max_t M_t > c) ≤ α for a new correct trajectory exchangeable with the n
    held-out ones (in expectation over the held-out draw).
    """
    a = check_level(alpha, "alpha")
    x = _held_out_values(max_log_values)
    n = len(x)
    k = math.ceil((1.0 - a) * (n + 1) - 1e-12)
    log_c = float(x[k - 1]) if k <= n else math.inf
    return EProcessThreshold(
        log_threshold=log_c,
        alpha=a,
        method="conformal",
        n=n,
        delta=None,
        guarantee="P(max_t M_t > c) ≤ α in expectation (split conformal, exchangeable data)",
    )


def max_log_eprocess(trajectories: Trajectories, log_m: ArrayLike) -> FloatArray:
    """(n,) max_t log M_{i,t} per trajectory."""
    lm = as_float_array(log_m, "log_m", ndim=1, finite=False)
    if len(lm) != trajectories.n_steps:
        raise ValueError(f"log_m: expected {trajectories.n_steps} values, got {len(lm)}")
    out: FloatArray = np.maximum.reduceat(lm, trajectories.offsets[:-1])
    return out


def eprocess_first_alarms(
    trajectories: Trajectories,
    log_m: ArrayLike,
    thresholds: EProcessThreshold | Sequence[EProcessThreshold],
    *,
    seed: int | np.random.Generator | None = None,
) -> IntArray:
    """First step with log M_t > log c per trajectory; (n,) for one threshold, (n, k) for k.

    ``NO_ALARM`` (−1) when a trajectory never alarms. Randomised-Ville thresholds draw one
    U ~ Unif(0, 1) per trajectory from ``seed`` (shared by all such thresholds).
    """
    lm = as_float_array(log_m, "log_m", ndim=1, finite=False)
    if len(lm) != trajectories.n_steps:
        raise ValueError(f"log_m: expected {trajectories.n_steps} values, got {len(lm)}")
    single = isinstance(thresholds, EProcessThreshold)
    if isinstance(thresholds, EProcessThreshold):
        ths: list[EProcessThreshold] = [thresholds]
    else:
        ths = list(thresholds)
    log_u: FloatArray | None = None
    out = np.empty((trajectories.n_trajectories, len(ths)), dtype=np.int64)
    for j, th in enumerate(ths):
        if th.method == "randomized_ville":
            if log_u is None:
                rng = np.random.default_rng(seed)
                log_u = np.log(rng.uniform(size=trajectories.n_trajectories))
            per_step = np.where(
                trajectories.is_last_step,
                np.repeat(log_u, trajectories.lengths) - math.log(th.alpha),
                th.log_threshold,
            )
            mask = lm > per_step
        else:
            mask = lm > th.log_threshold
        out[:, j] = first_alarm_from_mask(trajectories, mask)
    return out[:, 0] if single else out


# --------------------------------------------------------------------------- streaming
@dataclass(frozen=True)
class EProcessState:
    """Immutable state of a streaming e-process monitor: the prefix seen so far."""

    prefix: tuple[float, ...] = ()
    log_m: float = 0.0
    alarm_step: int = -1

    @property
    def alarmed(self) -> bool:
        return self.alarm_step != -1


@dataclass(frozen=True)
class EProcessStep:
    """Report after one score: log M_t, the absorbing alarm and its first step (0-based)."""

    step: int
    score: float
    log_m: float
    alarm: bool
    new_alarm: bool
    alarm_step: int


@dataclass(frozen=True)
class EProcessMonitor:
    """Streaming e-process monitor: feeds each new score, recomputes log M_t on the prefix.

    Alarm (absorbing) at the first t with log M_t > ``threshold.log_threshold``. The randomised
    Ville threshold needs to know the last step in advance and is not supported here (use
    :func:`eprocess_first_alarms` on complete trajectories).
    """

    model: LikelihoodRatioModel
    threshold: EProcessThreshold

    def __post_init__(self) -> None:
        if self.threshold.method == "randomized_ville":
            raise ValueError("threshold: randomized_ville needs the final step; not streamable")

    def init(self) -> EProcessState:
        return EProcessState()

    def update(self, state: EProcessState, score: float) -> tuple[EProcessState, EProcessStep]:
        s = float(score)
        if math.isnan(s):
            raise ValueError("score: must not be NaN")
        prefix = (*state.prefix, s)
        one = Trajectories(scores=np.asarray(prefix), offsets=np.array([0, len(prefix)]))
        log_m = float(self.model.log_ratio(one)[-1])
        step = len(prefix) - 1
        new_alarm = (not state.alarmed) and log_m > self.threshold.log_threshold
        alarm_step = step if new_alarm else state.alarm_step
        return (
            EProcessState(prefix=prefix, log_m=log_m, alarm_step=alarm_step),
            EProcessStep(
                step=step,
                score=s,
                log_m=log_m,
                alarm=alarm_step != -1,
                new_alarm=new_alarm,
                alarm_step=alarm_step,
            ),
        )


# --------------------------------------------------------------------------- e-valuator monitor
@dataclass(frozen=True)
class FittedEProcessMonitor:
    """A likelihood-ratio model plus one calibrated threshold per α."""

    model: LikelihoodRatioModel
    thresholds: tuple[EProcessThreshold, ...]

    @property
    def alphas(self) -> FloatArray:
        return np.array([t.alpha for t in self.thresholds])

    def log_eprocess(self, trajectories: Trajectories) -> FloatArray:
        return self.model.log_ratio(trajectories)

    def first_alarm_steps(
        self, trajectories: Trajectories, *, seed: int | np.random.Generator | None = None
    ) -> IntArray:
        """(n, len(alphas)) first alarm step (``NO_ALARM`` if none)."""
        out = eprocess_first_alarms(
            trajectories, self.log_eprocess(trajectories), list(self.thresholds), seed=seed
        )
        return out


def evaluator_monitor(
    calibration: Trajectories,
    alphas: float | ArrayLike,
    *,
    threshold: str = "pac",
    delta: float = 0.1,
    split_fraction: float = 0.5,
    split_seed: int = 42,
    C: float = 1.0,
    min_per_class: int = 5,
    prior: str = "first_step",
) -> FittedEProcessMonitor:
    """Fit an e-valuator monitor on labelled calibration trajectories.

    ``threshold="ville"`` / ``"randomized_ville"``: the model is fitted on ALL calibration
    trajectories and c = 1/α. ``"pac"`` / ``"conformal"``: the calibration trajectories are split
    by trajectory (*ref*: ``default_rng(split_seed).choice(n, int(n·split_fraction))`` in the
    given order = the model-fitting part; the rest = held-out), the model is fitted on the first
    part and c is computed from max_t M over the held-out CORRECT trajectories.
    """
    check_choice(threshold, "threshold", THRESHOLD_METHODS)
    a = check_levels(alphas, "alphas")
    labels = calibration.require_labels("calibration")
    if threshold in ("ville", "randomized_ville"):
        model = EValuatorModel.fit(calibration, C=C, min_per_class=min_per_class, prior=prior)
        make = ville_threshold if threshold == "ville" else randomized_ville_threshold
        return FittedEProcessMonitor(model=model, thresholds=tuple(make(float(x)) for x in a))
    frac = check_level(split_fraction, "split_fraction")
    n = calibration.n_trajectories
    n_fit = max(1, int(n * frac))
    fit_idx = np.random.default_rng(split_seed).choice(n, size=n_fit, replace=False)
    held = np.setdiff1d(np.arange(n), fit_idx)
    held_correct = held[labels[held] == 1]
    if len(held_correct) == 0:
        raise ValueError("calibration: the held-out part has no correct trajectory")
    model = EValuatorModel.fit(
        calibration.subset(fit_idx), C=C, min_per_class=min_per_class, prior=prior
    )
    held_tr = calibration.subset(held_correct)
    max_log = max_log_eprocess(held_tr, model.log_ratio(held_tr))
    if threshold == "pac":
        ths = tuple(pac_threshold(max_log, float(x), delta=delta) for x in a)
    else:
        ths = tuple(conformal_threshold(max_log, float(x)) for x in a)
    return FittedEProcessMonitor(model=model, thresholds=ths)
