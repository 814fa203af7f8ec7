"""Metrics of online monitors and the split-by-trajectory experiment driver (monitoring paper §5).

Per test split, for first-alarm steps (``NO_ALARM`` = −1 when a trajectory never alarms):

* false-alarm rate = fraction of CORRECT trajectories (label 1) that ever alarm;
* power = fraction of INCORRECT trajectories (label 0) that alarm;
* detection delay = mean over DETECTED incorrect trajectories of (tokens up to and including the
  alarm step) / (total tokens of the trajectory); 1.0 when nothing is detected (the paper's
  convention). Unit token weights give (t_alarm + 1)/T with 0-based t_alarm.

A rate whose denominator is zero (no correct or no incorrect trajectory) is NaN; the counts are
always reported.

The driver (:func:`run_monitor_experiment`) repeats: split the trajectories at random BY
TRAJECTORY (split i uses ``default_rng(seed + i).choice(n, int(fraction·n), replace=False)`` in
the container's order = calibration, the rest = test), calibrate every method for all controlled
rates ``alpha`` at once (the monitoring paper's ε),
evaluate on the test part. :func:`aggregate` gives mean / sd / 10 % and 90 % quantiles over
splits.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .._repr import result_repr
from .._streaming import NO_ALARM
from .._validation import (
    _INT64_MAX,
    check_choice,
    check_int_seed,
    check_level,
    check_levels,
    check_positive_int,
    plain,
)
from ..splits import split_by_trajectory
from ..typing import FloatArray, IntArray
from ._calibration_common import RISKS, GridArg, Risk, resolve_grid
from .crc import crc_thresholds
from .eprocess import THRESHOLD_METHODS, evaluator_monitor
from .monitors import first_alarm_matrix
from .trajectories import Trajectories, check_trajectories
from .ucb import UCB_BOUNDS, ucb_thresholds

__all__ = [
    "ExperimentResult",
    "ExperimentSummary",
    "MetricSummary",
    "MonitorMethod",
    "MonitorMetrics",
    "aggregate",
    "compute_monitor_metrics",
    "crc_method",
    "default_methods",
    "evaluator_method",
    "run_monitor_experiment",
    "split_by_trajectory",  # re-exported from ctd_stats.splits
    "ucb_method",
]

#: A monitor method: (calibration, test, alpha) -> (n_test, len(alpha)) first-alarm steps.
MonitorMethod = Callable[[Trajectories, Trajectories, FloatArray], IntArray]


@dataclass(frozen=True)
class MonitorMetrics:
    """Metrics of one monitor on one labelled test set (see the module docstring)."""

    false_alarm_rate: float
    power: float
    detection_delay: float
    n_correct: int
    n_incorrect: int
    n_false_alarms: int
    n_detections: int

    def __repr__(self) -> str:
        return result_repr(
            self,
            f"false_alarm_rate={self.false_alarm_rate:.4g}, power={self.power:.4g}",
            [
                ("detection_delay", self.detection_delay),
                ("false_alarms", f"{self.n_false_alarms} of {self.n_correct} correct"),
                ("detections", f"{self.n_detections} of {self.n_incorrect} incorrect"),
            ],
        )


def _check_alarms(
    trajectories: Trajectories, first_alarms: ArrayLike, name: str = "first_alarms"
) -> IntArray:
    """Integer first-alarm steps of shape (n,) or (n, k); errors are named ``name``."""
    try:
        fa = np.asarray(first_alarms)
    except (ValueError, TypeError) as exc:  # ragged nested sequences
        raise ValueError(f"{name}: cannot be read as an array ({exc})") from None
    if fa.dtype.kind not in "iu":
        raise ValueError(f"{name}: expected integer steps, got dtype {fa.dtype}")
    if fa.dtype.kind == "u" and fa.size and fa.max() > _INT64_MAX:
        raise ValueError(f"{name}: steps must be NO_ALARM (-1) or in [0, T_i)")
    fa = fa.astype(np.int64)
    if fa.ndim not in (1, 2) or fa.shape[0] != trajectories.n_trajectories:
        raise ValueError(
            f"{name}: expected shape ({trajectories.n_trajectories},) or "
            f"({trajectories.n_trajectories}, k), got {fa.shape}"
        )
    lengths = trajectories.lengths.reshape((-1,) + (1,) * (fa.ndim - 1))
    if np.any((fa < NO_ALARM) | (fa >= lengths)):
        raise ValueError(f"{name}: steps must be NO_ALARM (-1) or in [0, T_i)")
    return fa


def _metric_arrays(
    trajectories: Trajectories, first_alarms: IntArray
) -> tuple[FloatArray, FloatArray, FloatArray, IntArray, IntArray, int, int]:
    """Vectorised metrics for (n, k) first alarms: fa, power, delay, #fa, #det, n1, n0."""
    labels = trajectories.require_labels()
    alarmed = first_alarms != NO_ALARM
    correct = labels == 1
    n1 = int(correct.sum())
    n0 = len(labels) - n1
    n_fa = alarmed[correct].sum(axis=0).astype(np.int64)
    n_det = alarmed[~correct].sum(axis=0).astype(np.int64)
    fa_rate = n_fa / n1 if n1 else np.full(first_alarms.shape[1], math.nan)
    power = n_det / n0 if n0 else np.full(first_alarms.shape[1], math.nan)
    pos = trajectories.offsets[:-1, None] + np.maximum(first_alarms, 0)
    frac = trajectories.cumulative_weight_fraction[pos]
    detected = alarmed & ~correct[:, None]
    sums = np.where(detected, frac, 0.0).sum(axis=0)
    delay = np.where(n_det > 0, sums / np.maximum(n_det, 1), 1.0)
    return (
        np.asarray(fa_rate, dtype=np.float64),
        np.asarray(power, dtype=np.float64),
        delay,
        n_fa,
        n_det,
        n1,
        n0,
    )


def compute_monitor_metrics(trajectories: Trajectories, first_alarms: ArrayLike) -> MonitorMetrics:
    """False-alarm rate, power and token-weighted detection delay of one monitor.

    ``first_alarms`` (n,) holds each trajectory's first alarm step (0-based) or ``NO_ALARM``.
    """
    check_trajectories(trajectories)
    fa = _check_alarms(trajectories, first_alarms)
    if fa.ndim != 1:
        raise ValueError("first_alarms: expected one column; use run_monitor_experiment for many")
    rate, power, delay, n_fa, n_det, n1, n0 = _metric_arrays(trajectories, fa[:, None])
    return MonitorMetrics(
        false_alarm_rate=float(rate[0]),
        power=float(power[0]),
        detection_delay=float(delay[0]),
        n_correct=n1,
        n_incorrect=n0,
        n_false_alarms=int(n_fa[0]),
        n_detections=int(n_det[0]),
    )


# --------------------------------------------------------------------------- methods
def crc_method(*, risk: Risk = "false_alarm", grid: GridArg = None) -> MonitorMethod:
    """Threshold monitor with the CRC threshold (E[R] ≤ alpha for the chosen ``risk``)."""
    check_choice(risk, "risk", RISKS)
    g = resolve_grid(grid)

    def run(cal: Trajectories, test: Trajectories, alpha: FloatArray) -> IntArray:
        return first_alarm_matrix(test, crc_thresholds(cal, alpha=alpha, risk=risk, grid=g))

    return run


def ucb_method(
    *,
    delta: float = 0.1,
    bound: str = "binomial",
    risk: Risk = "false_alarm",
    grid: GridArg = None,
) -> MonitorMethod:
    """Threshold monitor with the UCB threshold (P(R > alpha) ≤ δ for the chosen ``risk``)."""
    d = check_level(delta, "delta")
    check_choice(bound, "bound", UCB_BOUNDS)
    check_choice(risk, "risk", RISKS)
    g = resolve_grid(grid)

    def run(cal: Trajectories, test: Trajectories, alpha: FloatArray) -> IntArray:
        lam = ucb_thresholds(cal, alpha=alpha, delta=d, risk=risk, bound=bound, grid=g)
        return first_alarm_matrix(test, lam)

    return run


def evaluator_method(
    *,
    threshold: str = "ville",
    delta: float = 0.1,
    prior: str = "first_step",
    split_seed: int = 42,
    seed: int = 0,
) -> MonitorMethod:
    """E-valuator monitor at each controlled rate alpha (``threshold`` one of ville,
    randomized_ville (alpha used as the level), pac, conformal; ``seed`` drives the
    randomised-Ville uniforms)."""
    check_choice(threshold, "threshold", THRESHOLD_METHODS)
    check_level(delta, "delta")
    check_choice(prior, "prior", ("first_step", "per_step"))
    check_int_seed(split_seed, "split_seed")
    check_int_seed(seed, "seed")

    def run(cal: Trajectories, test: Trajectories, alpha: FloatArray) -> IntArray:
        anytime = threshold in ("ville", "randomized_ville")  # alpha is then the Ville level
        mon = evaluator_monitor(
            cal,
            alpha=None if anytime else alpha,
            level=alpha if anytime else None,
            threshold=threshold,
            delta=delta,
            prior=prior,
            split_seed=split_seed,
        )
        return mon.first_alarm_steps(test, seed=seed)

    return run


def default_methods(*, delta: float = 0.1) -> dict[str, MonitorMethod]:
    """The paper's four monitors: CRC, UCB (exact binomial), e-valuator anytime (Ville), PAC."""
    return {
        "crc": crc_method(),
        "ucb": ucb_method(delta=delta),
        "evaluator_anytime": evaluator_method(threshold="ville", delta=delta),
        "evaluator_pac": evaluator_method(threshold="pac", delta=delta),
    }


# --------------------------------------------------------------------------- experiment driver
@dataclass(frozen=True)
class ExperimentResult:
    """Metrics per method, split and alpha: arrays of shape (n_methods, n_splits, n_alpha)."""

    methods: tuple[str, ...]
    alpha: FloatArray
    seeds: IntArray
    false_alarm_rate: FloatArray
    power: FloatArray
    detection_delay: FloatArray
    n_false_alarms: IntArray
    n_detections: IntArray
    n_correct: IntArray
    n_incorrect: IntArray

    def method(self, name: str) -> int:
        if name not in self.methods:
            raise ValueError(f"name: unknown method {plain(name)}; have {list(self.methods)}")
        return self.methods.index(name)

    def __repr__(self) -> str:
        head = f"{len(self.methods)} methods, {len(self.seeds)} splits, {len(self.alpha)} alpha"
        fields = ["alpha", "false_alarm_rate", "power", "detection_delay"]
        return result_repr(self, head, [("methods", ", ".join(self.methods)), *fields])


@dataclass(frozen=True)
class MetricSummary:
    """Across-split summary, arrays of shape (n_methods, n_alpha). ``sd`` uses ddof = 0."""

    mean: FloatArray
    sd: FloatArray
    q10: FloatArray
    q90: FloatArray

    def __repr__(self) -> str:
        return result_repr(self, f"shape={self.mean.shape}", ["mean", "sd"])


@dataclass(frozen=True)
class ExperimentSummary:
    """Across-split summaries of :class:`ExperimentResult` (see :func:`aggregate`)."""

    methods: tuple[str, ...]
    alpha: FloatArray
    n_splits: int
    false_alarm_rate: MetricSummary
    power: MetricSummary
    detection_delay: MetricSummary

    def __repr__(self) -> str:
        means = [
            (f"{name}.mean", getattr(self, name).mean)
            for name in ("false_alarm_rate", "power", "detection_delay")
        ]
        head = f"{len(self.methods)} methods, {self.n_splits} splits"
        return result_repr(self, head, [("methods", ", ".join(self.methods)), "alpha", *means])


def run_monitor_experiment(
    trajectories: Trajectories,
    *,
    alpha: ArrayLike,
    methods: Mapping[str, MonitorMethod] | None = None,
    n_splits: int = 10,
    calibration_fraction: float = 0.2,
    seed: int = 0,
) -> ExperimentResult:
    """Repeated calibration/test splits by trajectory, all methods, all ``alpha`` at once.

    Defaults follow the reference protocol: 10 splits, 20 % calibration, split i seeded with
    ``seed + i`` (seed0 = 0), the four :func:`default_methods`.
    """
    check_trajectories(trajectories).require_labels()
    if trajectories.n_trajectories < 2:
        raise ValueError("trajectories: at least 2 trajectories are needed to split")
    alphas = check_levels(alpha, "alpha")
    meths = dict(default_methods() if methods is None else _methods_iv(methods))
    if not meths:
        raise ValueError("methods: at least one method is needed")
    n_splits = check_positive_int(n_splits, "n_splits")
    check_level(calibration_fraction, "calibration_fraction")
    seed = check_int_seed(seed, count=n_splits)
    names = tuple(meths)
    shape = (len(names), n_splits, len(alphas))
    fa = np.empty(shape)
    pw = np.empty(shape)
    dl = np.empty(shape)
    nfa = np.empty(shape, dtype=np.int64)
    ndet = np.empty(shape, dtype=np.int64)
    n1 = np.empty(n_splits, dtype=np.int64)
    n0 = np.empty(n_splits, dtype=np.int64)
    seeds = seed + np.arange(n_splits, dtype=np.int64)
    for s, split_seed in enumerate(seeds):
        split = split_by_trajectory(
            trajectories.n_trajectories,
            calibration_fraction=calibration_fraction,
            seed=int(split_seed),
        )
        cal, test = trajectories.subset(split.calibration), trajectories.subset(split.test)
        for m, name in enumerate(names):
            alarms = _check_alarms(test, meths[name](cal, test, alphas), f"methods: {name!r}")
            if alarms.ndim != 2 or alarms.shape[1] != len(alphas):
                raise ValueError(f"methods: {name!r} must return shape (n_test, {len(alphas)})")
            out = _metric_arrays(test, alarms)
            fa[m, s], pw[m, s], dl[m, s], nfa[m, s], ndet[m, s] = out[:5]
            n1[s], n0[s] = out[5], out[6]
    return ExperimentResult(
        methods=names,
        alpha=alphas,
        seeds=seeds,
        false_alarm_rate=fa,
        power=pw,
        detection_delay=dl,
        n_false_alarms=nfa,
        n_detections=ndet,
        n_correct=n1,
        n_incorrect=n0,
    )


def _methods_iv(methods: object) -> Mapping[str, MonitorMethod]:
    """A mapping of method names (str) to callables."""
    if not isinstance(methods, Mapping):
        raise TypeError(
            f"methods: expected a mapping of names to methods, got {type(methods).__name__}"
        )
    for key, fn in methods.items():
        if not isinstance(key, str):
            raise TypeError(f"methods: names must be str, got {type(key).__name__}")
        if not callable(fn):
            raise TypeError(f"methods: {plain(key)} is not callable ({type(fn).__name__})")
    return methods


def _summary(x: FloatArray) -> MetricSummary:
    return MetricSummary(
        mean=x.mean(axis=1),
        sd=x.std(axis=1),
        q10=np.quantile(x, 0.1, axis=1),
        q90=np.quantile(x, 0.9, axis=1),
    )


def aggregate(result: ExperimentResult) -> ExperimentSummary:
    """Mean, sd (ddof = 0, as the reference), 10 % and 90 % quantiles over splits."""
    if not isinstance(result, ExperimentResult):
        raise TypeError(f"result: expected an ExperimentResult, got {type(result).__name__}")
    return ExperimentSummary(
        methods=result.methods,
        alpha=result.alpha,
        n_splits=len(result.seeds),
        false_alarm_rate=_summary(result.false_alarm_rate),
        power=_summary(result.power),
        detection_delay=_summary(result.detection_delay),
    )
