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
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .._repr import result_repr
from .._serialize import JSONSerializable, array_sha256
from .._streaming import Step
from .._validation import (
    FloatArray,
    IntArray,
    as_float_array,
    check_choice,
    check_int_seed,
    check_level,
    check_levels,
    check_seed,
)
from .eprocess_thresholds import (
    THRESHOLD_METHODS,
    EProcessThreshold,
    _conformal_threshold,
    _pac_threshold,
    conformal_threshold,
    pac_threshold,
    randomized_ville_threshold,
    ville_threshold,
)
from .evaluator import ChangePointModel, EValuatorModel, LikelihoodRatioModel, StepModel, _fit_iv
from .monitors import first_alarm_from_mask
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
@dataclass(frozen=True)
class EProcessState(JSONSerializable):
    """Frozen state of a streaming e-process monitor: the prefix seen so far.

    ``alarm_step`` is the 0-based index of the first alarm (``None`` while there is none).
    """

    prefix: tuple[float, ...] = ()
    log_m: float = 0.0
    alarm_step: int | None = None

    @property
    def alarmed(self) -> bool:
        return self.alarm_step is not None

    def _json_meta(self) -> dict[str, Any]:
        return {
            "guarantee": "checkpoint of an e-process monitor (the threshold carries the guarantee)",
            "n": len(self.prefix),
            "calibration_sha256": None,
            "settings": {},
        }

    def __repr__(self) -> str:
        return result_repr(
            "EProcessState",
            f"t={len(self.prefix)}, alarmed={self.alarmed}",
            [("log_m", self.log_m), ("alarm_step", self.alarm_step)],
        )


@dataclass(frozen=True)
class EProcessMonitor:
    """Streaming e-process monitor: feeds each new score, recomputes log M_t on the prefix.

    Alarm (absorbing) at the first t with log M_t > ``threshold.log_threshold``; it carries the
    threshold's guarantee. The randomised Ville threshold needs to know the last step in advance
    and is not supported here (use :func:`eprocess_first_alarms` on complete trajectories).
    ``update(state, x) -> (state, Step)`` is pure, with ``Step.statistic`` = log M_t.
    """

    model: LikelihoodRatioModel
    threshold: EProcessThreshold

    def __post_init__(self) -> None:
        if not isinstance(self.threshold, EProcessThreshold):
            raise TypeError("threshold: expected an EProcessThreshold")
        if self.threshold.method == "randomized_ville":
            raise ValueError("threshold: randomized_ville needs the final step; not streamable")

    def init(self) -> EProcessState:
        return EProcessState()

    def update(self, state: EProcessState, x: float) -> tuple[EProcessState, Step]:
        """Feed one score x; returns the new state and the step (statistic = log M_t)."""
        s = float(x)
        if math.isnan(s):
            raise ValueError("x: must not be NaN")
        prefix = (*state.prefix, s)
        one = Trajectories(scores=np.asarray(prefix), offsets=np.array([0, len(prefix)]))
        log_m = float(self.model.log_ratio(one)[-1])
        t = len(prefix) - 1
        new_alarm = (not state.alarmed) and log_m > self.threshold.log_threshold
        alarm_step = t if new_alarm else state.alarm_step
        return (
            EProcessState(prefix=prefix, log_m=log_m, alarm_step=alarm_step),
            Step(
                t=t,
                x=s,
                statistic=log_m,
                alarm=alarm_step is not None,
                new_alarm=new_alarm,
                alarm_step=alarm_step,
            ),
        )


# --------------------------------------------------------------------------- e-valuator monitor
@dataclass(frozen=True)
class FittedEProcessMonitor:
    """A likelihood-ratio model plus one calibrated threshold per controlled rate."""

    model: LikelihoodRatioModel
    thresholds: tuple[EProcessThreshold, ...]

    @property
    def alpha(self) -> FloatArray:
        """The controlled rate of each threshold (``alpha`` or, for Ville, ``level``)."""
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
                ("alpha", self.alpha),
            ],
        )


def evaluator_monitor(
    calibration: Trajectories,
    alpha: float | ArrayLike,
    *,
    threshold: str = "pac",
    delta: float = 0.1,
    split_fraction: float = 0.5,
    split_seed: int = 42,
    C: float = 1.0,
    min_per_class: int = 5,
    prior: str = "first_step",
) -> FittedEProcessMonitor:
    """Fit an e-valuator monitor on labelled calibration trajectories, one threshold per alpha.

    ``threshold="ville"`` / ``"randomized_ville"``: the model is fitted on ALL calibration
    trajectories and c = 1/level with level = each ``alpha`` value (anytime valid only for a
    true test martingale). ``"pac"`` / ``"conformal"``: the calibration trajectories are split
    by trajectory (*ref*: ``default_rng(split_seed).choice(n, int(n·split_fraction))`` in the
    given order = the model-fitting part; the rest = held-out), the model is fitted on the first
    part and c is computed from max_t M over the held-out CORRECT trajectories.
    """
    check_trajectories(calibration, "calibration")
    check_choice(threshold, "threshold", THRESHOLD_METHODS)
    a = check_levels(alpha, "alpha")
    d = check_level(delta, "delta")
    frac = check_level(split_fraction, "split_fraction")
    split_seed = check_int_seed(split_seed, "split_seed")
    labels = calibration.require_labels("calibration")
    settings = _fit_iv(min_per_class, C, 1e-6, None, prior)  # the default clip of fit()
    if threshold in ("ville", "randomized_ville"):
        model = EValuatorModel._fit(calibration, *settings, prior, name="calibration")
        make = ville_threshold if threshold == "ville" else randomized_ville_threshold
        return FittedEProcessMonitor(model=model, thresholds=tuple(make(float(x)) for x in a))
    n = calibration.n_trajectories
    n_fit = max(1, int(n * frac))
    fit_idx = np.random.default_rng(split_seed).choice(n, size=n_fit, replace=False)
    held = np.setdiff1d(np.arange(n), fit_idx)
    held_correct = held[labels[held] == 1]
    if len(held_correct) == 0:
        raise ValueError("calibration: the held-out part has no correct trajectory")
    model = EValuatorModel._fit(calibration.subset(fit_idx), *settings, prior, name="calibration")
    held_tr = calibration.subset(held_correct)
    max_log = max_log_eprocess(held_tr, model.log_ratio(held_tr))
    x, sha = np.sort(max_log), array_sha256(max_log)
    if threshold == "pac":
        ths = tuple(_pac_threshold(x, sha, float(v), d) for v in a)
    else:
        ths = tuple(_conformal_threshold(x, sha, float(v)) for v in a)
    return FittedEProcessMonitor(model=model, thresholds=ths)
