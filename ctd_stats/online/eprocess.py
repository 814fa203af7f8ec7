"""E-process monitors: first alarms, the streaming monitor and the fitted e-valuator monitor.

An e-process monitor computes, at every step t of a trajectory, log M_t = an (estimated) log
likelihood ratio of the prefix s_{1:t} under "incorrect" versus "correct" (models:
:mod:`~ctd_stats.online.evaluator`) and alarms at the first t with log M_t > log c (strict),
c from :mod:`~ctd_stats.online.eprocess_thresholds` (Ville, randomised Ville, PAC, conformal;
monitoring paper §4.2). Alarm steps are 0-based; ``NO_ALARM`` (−1) in arrays, ``None`` in a
streaming state. This module re-exports the models and thresholds, so
``from ctd_stats.online.eprocess import ...`` finds everything about e-process monitors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .._repr import result_repr
from .._serialize import JSONSerializable, exact_eq
from .._streaming import Step, Trace, check_state, trace_by_updates
from .._validation import (
    as_float_array,
    check_choice,
    check_int_seed,
    check_level,
    check_levels,
    check_seed,
    plain,
)
from ..typing import FloatArray, IntArray
from .eprocess_thresholds import (
    THRESHOLD_METHODS,
    EProcessThreshold,
    conformal_threshold,
    pac_threshold,
    randomized_ville_threshold,
    ville_threshold,
)
from .evaluator import (
    ChangePointModel,
    EValuatorModel,
    LikelihoodRatioModel,
    StepModel,
    check_fit_settings,
    fit_evaluator,
)
from .monitors import check_score, first_alarm_from_mask, latched_step
from .trajectories import Trajectories, check_trajectories

__all__ = [
    "THRESHOLD_METHODS",
    "ChangePointModel",
    "EProcessMonitor",
    "EProcessState",
    "EProcessThreshold",
    "EValuatorModel",
    "FittedEProcessMonitor",
    "LikelihoodRatioModel",
    "StepModel",
    "conformal_threshold",
    "eprocess_first_alarms",
    "evaluator_monitor",
    "max_log_eprocess",
    "pac_threshold",
    "randomized_ville_threshold",
    "ville_threshold",
]


def max_log_eprocess(trajectories: Trajectories, log_m: ArrayLike) -> FloatArray:
    """(n,) max_t log M_{i,t} per trajectory."""
    check_trajectories(trajectories)
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
    """First 0-based step with log M_t > log c per trajectory; (n,) for one threshold, (n, k).

    ``NO_ALARM`` (−1) when a trajectory never alarms. Randomised-Ville thresholds draw one
    U ~ Unif(0, 1) per trajectory from ``seed`` (shared by all such thresholds).
    """
    check_trajectories(trajectories)
    lm = as_float_array(log_m, "log_m", ndim=1, finite=False)
    if len(lm) != trajectories.n_steps:
        raise ValueError(f"log_m: expected {trajectories.n_steps} values, got {len(lm)}")
    single = isinstance(thresholds, EProcessThreshold)
    ths = _thresholds_iv(thresholds)
    check_seed(seed, allow_none=True)
    return _first_alarms(trajectories, lm, ths, seed, single)


def _thresholds_iv(thresholds: object) -> list[EProcessThreshold]:
    """One EProcessThreshold or a sequence of them, as a list."""
    if isinstance(thresholds, EProcessThreshold):
        return [thresholds]
    if isinstance(thresholds, (str, bytes)) or not isinstance(thresholds, (Sequence, np.ndarray)):
        raise TypeError(
            "thresholds: expected an EProcessThreshold or a sequence of them, got "
            f"{type(thresholds).__name__}"
        )
    ths = list(thresholds)
    if not all(isinstance(t, EProcessThreshold) for t in ths):
        raise TypeError("thresholds: expected EProcessThreshold objects")
    return ths


def _first_alarms(
    trajectories: Trajectories,
    lm: FloatArray,
    ths: list[EProcessThreshold],
    seed: int | np.random.Generator | None,
    single: bool,
) -> IntArray:
    """Kernel of :func:`eprocess_first_alarms` (validated log M and thresholds)."""
    log_u: FloatArray | None = None
    out = np.empty((trajectories.n_trajectories, len(ths)), dtype=np.int64)
    for j, th in enumerate(ths):
        if th.method == "randomized_ville":
            if log_u is None:
                rng = np.random.default_rng(seed)
                log_u = np.log(rng.uniform(size=trajectories.n_trajectories))
            per_step = np.where(
                trajectories.is_last_step,
                np.repeat(log_u, trajectories.lengths) - math.log(th.rate),
                th.log_threshold,
            )
            mask = lm > per_step
        else:
            mask = lm > th.log_threshold
        out[:, j] = first_alarm_from_mask(trajectories, mask)
    return out[:, 0] if single else out


# --------------------------------------------------------------------------- streaming
@exact_eq
@dataclass(frozen=True)
class EProcessState(JSONSerializable, kind="ctd_stats.EProcessState"):
    """Frozen state of a streaming e-process monitor after ``t`` scores.

    It keeps only what the model still reads. ``prefix``: the scores an
    :class:`~ctd_stats.online.evaluator.EValuatorModel` can still read (at most its longest step
    model's length; log M_t is constant after it), all of them for a generic model, none for a
    model with a recursive update. ``carry``: the sufficient statistic of a recursive model
    (:class:`~ctd_stats.online.evaluator.ChangePointModel`: (log A_t,)), empty otherwise.
    ``alarm_step`` is the 0-based index of the first alarm (``None`` while there is none).
    """

    t: int = 0
    prefix: tuple[float, ...] = ()
    log_m: float = 0.0
    alarm_step: int | None = None
    carry: tuple[float, ...] = ()

    _json_guarantee = "checkpoint of an e-process monitor (the threshold carries the guarantee)"

    @property
    def alarmed(self) -> bool:
        return self.alarm_step is not None

    def __repr__(self) -> str:
        kept = ("kept", len(self.prefix) + len(self.carry))
        return result_repr(self, f"t={self.t}, alarm_step={self.alarm_step}", ["log_m", kept])


@dataclass(frozen=True)
class EProcessMonitor:
    """Streaming e-process monitor: feeds each new score, updates log M_t from what it kept.

    Alarm (absorbing) at the first t with log M_t > ``threshold.log_threshold``; it carries the
    threshold's guarantee. The randomised Ville threshold needs to know the last step in advance
    and is not supported here (use :func:`eprocess_first_alarms` on complete trajectories).
    A :class:`~ctd_stats._streaming.StreamingMonitor` with ``Step.statistic`` = log M_t.

    The state keeps only what the model reads, so a checkpoint and an update cost O(model
    length), whatever t: a :class:`~ctd_stats.online.evaluator.ChangePointModel` keeps one
    number (its recursion's log A_t); an :class:`~ctd_stats.online.evaluator.EValuatorModel`
    reads at most its longest step model's prefix (L scores) and carries its last value after
    it. Other models get the whole prefix.
    """

    model: LikelihoodRatioModel
    threshold: EProcessThreshold

    def __post_init__(self) -> None:
        if not isinstance(self.model, LikelihoodRatioModel):
            raise TypeError("model: expected a LikelihoodRatioModel (a log_ratio method)")
        if not isinstance(self.threshold, EProcessThreshold):
            raise TypeError("threshold: expected an EProcessThreshold")
        if self.threshold.method == "randomized_ville":
            raise ValueError("threshold: randomized_ville needs the final step; not streamable")

    @property
    def horizon(self) -> int | None:
        """Longest prefix the model reads (``None``: all of it, or a recursive model)."""
        if isinstance(self.model, EValuatorModel) and self.model.step_models:
            return max(m.step for m in self.model.step_models)
        return None

    def init(self) -> EProcessState:
        return EProcessState()

    def update(self, state: EProcessState, x: float, /) -> tuple[EProcessState, Step]:
        """Feed one score x; returns the new state and the step (statistic = log M_t)."""
        check_state(state, EProcessState)
        s = check_score(x)
        t = state.t
        horizon = self.horizon
        prefix, carry = state.prefix, state.carry
        if isinstance(self.model, ChangePointModel):
            log_a, log_m = self.model.log_ratio_step(carry[0] if carry else -math.inf, t, s)
            carry = (log_a,)
        elif horizon is not None and t >= horizon:
            # past the last step model log M_t carries its last value: nothing new to read
            log_m = state.log_m
        else:
            prefix = (*prefix, s)
            one = Trajectories(scores=np.asarray(prefix), offsets=np.array([0, len(prefix)]))
            log_m = float(self.model.log_ratio(one)[-1])
        crossed = log_m > self.threshold.log_threshold
        step = latched_step(t, s, log_m, crossed, state.alarm_step)
        return EProcessState(t + 1, prefix, log_m, step.alarm_step, carry), step

    def run(self, x: ArrayLike, /, *, state: EProcessState | None = None) -> Trace[EProcessState]:
        """Feed a stretch of scores (``update`` in a loop) from ``state`` (default: fresh)."""
        xs = as_float_array(x, "x", ndim=1, finite=False)
        state = self.init() if state is None else check_state(state, EProcessState)
        return trace_by_updates(
            self, xs.tolist(), state, start=state.t, alarm_step=state.alarm_step
        )


# --------------------------------------------------------------------------- e-valuator monitor
@dataclass(frozen=True)
class FittedEProcessMonitor:
    """A likelihood-ratio model plus one calibrated threshold per controlled rate."""

    model: LikelihoodRatioModel
    thresholds: tuple[EProcessThreshold, ...]

    @property
    def rate(self) -> FloatArray:
        """The rate each threshold controls (``level`` for Ville, ``alpha`` for PAC/conformal)."""
        return np.array([t.rate for t in self.thresholds])

    def log_eprocess(self, trajectories: Trajectories) -> FloatArray:
        return self.model.log_ratio(trajectories)

    def first_alarm_steps(
        self, trajectories: Trajectories, *, seed: int | np.random.Generator | None = None
    ) -> IntArray:
        """(n, len(thresholds)) first 0-based alarm step (``NO_ALARM`` if none)."""
        check_trajectories(trajectories)
        check_seed(seed, allow_none=True)
        lm = self.log_eprocess(trajectories)
        return _first_alarms(trajectories, lm, list(self.thresholds), seed, False)

    def __repr__(self) -> str:
        found = sum(t.found for t in self.thresholds)
        return result_repr(
            "FittedEProcessMonitor",
            f"{len(self.thresholds)} thresholds, {found} found",
            [
                ("model", type(self.model).__name__),
                ("method", self.thresholds[0].method if self.thresholds else None),
                ("rate", self.rate),
            ],
        )


def evaluator_monitor(
    calibration: Trajectories,
    *,
    alpha: float | ArrayLike | None = None,
    level: float | ArrayLike | None = None,
    threshold: str = "pac",
    delta: float = 0.1,
    split_fraction: float = 0.5,
    split_seed: int = 42,
    C: float = 1.0,
    min_per_class: int = 5,
    prior: str = "first_step",
) -> FittedEProcessMonitor:
    """Fit an e-valuator monitor on labelled calibration trajectories, one threshold per rate.

    ``threshold="ville"`` / ``"randomized_ville"`` take ``level`` (one or many): the model is
    fitted on ALL calibration trajectories and c = 1/level (anytime valid only for a true test
    martingale). ``"pac"`` / ``"conformal"`` take ``alpha`` (the false-alarm rate, one or
    many): the calibration trajectories are split
    by trajectory (*ref*: ``default_rng(split_seed).choice(n, int(n·split_fraction))`` in the
    given order = the model-fitting part; the rest = held-out), the model is fitted on the first
    part and c is computed from max_t M over the held-out CORRECT trajectories.
    """
    check_trajectories(calibration, "calibration")
    check_choice(threshold, "threshold", THRESHOLD_METHODS)
    anytime = threshold in ("ville", "randomized_ville")
    given, missing = ("level", "alpha") if anytime else ("alpha", "level")
    rates = level if anytime else alpha
    if (alpha if anytime else level) is not None:
        raise TypeError(f"{missing}: not used by threshold={plain(threshold)}; pass {given}=")
    if rates is None:
        raise TypeError(f"{given}: required for threshold={plain(threshold)}")
    a = check_levels(rates, given)
    d = check_level(delta, "delta")
    frac = check_level(split_fraction, "split_fraction")
    split_seed = check_int_seed(split_seed, "split_seed")
    labels = calibration.require_labels("calibration")
    settings = check_fit_settings(min_per_class, C, 1e-6, None, prior)  # fit()'s default clip
    if anytime:
        model = fit_evaluator(calibration, *settings, name="calibration")
        make = ville_threshold if threshold == "ville" else randomized_ville_threshold
        return FittedEProcessMonitor(model=model, thresholds=tuple(make(float(x)) for x in a))
    n = calibration.n_trajectories
    n_fit = max(1, int(n * frac))
    fit_idx = np.random.default_rng(split_seed).choice(n, size=n_fit, replace=False)
    held = np.setdiff1d(np.arange(n), fit_idx)
    held_correct = held[labels[held] == 1]
    if len(held_correct) == 0:
        raise ValueError("calibration: the held-out part has no correct trajectory")
    model = fit_evaluator(calibration.subset(fit_idx), *settings, name="calibration")
    held_tr = calibration.subset(held_correct)
    max_log = max_log_eprocess(held_tr, model.log_ratio(held_tr))
    if threshold == "pac":
        ths = tuple(pac_threshold(max_log, alpha=float(v), delta=d) for v in a)
    else:
        ths = tuple(conformal_threshold(max_log, alpha=float(v)) for v in a)
    return FittedEProcessMonitor(model=model, thresholds=ths)
