"""Streaming deployment of a calibrated delegation policy: :class:`Delegator`.

A :class:`Delegator` applies a calibrated threshold
(:class:`~ctd_stats.cascade.calibration.ThresholdCalibration`, CTD paper §4.2) to ONE input at a
time — the rule "delegate iff signal(x) > τ" uses no batch statistic, so it runs on a stream —
and advances a :class:`~ctd_stats.cascade.streaming.BudgetMonitor` at the calibration's budget
with each decision; the monitor's alarm means the stream no longer looks like the calibration
data (recalibrate). Guarantee: each decision inherits the calibration's P(rate ≤ α) ≥ 1 − δ on
exchangeable streams; the alarm is anytime valid at ``level`` (plus δ, see the monitor).

Protocol (:mod:`ctd_stats._streaming`): ``state = delegator.init()``;
``state, step = delegator.update(state, score)`` with ``step.delegated`` the decision and
``step.statistic`` the monitor's log e-value; :meth:`Delegator.decide_stream` does a whole
stretch at once (vectorised decisions, the bets in one tight loop) with identical results.
:class:`DelegationSession` is a convenience holder of a state; it only calls the pure methods.

Grouped calibrations (``groups=`` of :func:`~ctd_stats.cascade.calibrate_ctd` etc.) take the
group of each input (``update(state, score, group=g)``, ``decide_stream(scores, groups=...)``;
required by a per-group calibration) and watch every group's rate against its cap as well as
the overall rate, the level split by Bonferroni (see :class:`Delegator`); their state is a
:class:`GroupedDelegatorState`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .._repr import fmt, headline, result_repr
from .._serialize import JSONSerializable, exact_eq
from .._streaming import BatchMonitor, Step, StreamingMonitor, Trace, check_state, trace_by_updates
from .._validation import as_float_array, check_choice, plain
from ..grouped import GroupLabel, group_labels
from ..typing import FloatArray
from ._grouped_stream import grouped_stream
from .calibration import ThresholdCalibration
from .metrics import MERGES, Merge
from .signals import uncertainty_from_sorted
from .streaming import BudgetMonitor

__all__ = ["DelegationSession", "Delegator", "DelegatorState", "GroupedDelegatorState"]


@exact_eq
@dataclass(frozen=True)
class DelegatorState(JSONSerializable, kind="ctd_stats.DelegatorState"):
    """A delegator after ``t`` inputs: its monitor's state (``None`` without one).

    ``alarm_step`` is the 0-based step of the monitor's first alarm (``None`` while there is
    none). The state serialises exactly when the monitor's state does (every monitor of the
    package).
    """

    t: int
    monitor: Any
    alarm_step: int | None = None

    _json_guarantee = (
        "State of a streaming CTD delegator and its anytime-valid budget monitor: restoring it "
        "and continuing gives exactly the decisions and e-values of an uninterrupted run."
    )

    @property
    def needs_recalibration(self) -> bool:
        """True once the monitor has alarmed."""
        return self.alarm_step is not None

    def __repr__(self) -> str:
        return result_repr(
            self,
            f"t={self.t}, alarm_step={self.alarm_step}",
            [("monitor", headline(self.monitor))],
        )


@exact_eq
@dataclass(frozen=True)
class GroupedDelegatorState(DelegatorState, kind="ctd_stats.GroupedDelegatorState"):
    """A grouped delegator after ``t`` inputs: the overall monitor's state and each group's.

    ``group_monitors`` follows the calibration's group order (``None`` where a group has no
    monitor); each group monitor counts only its group's inputs. ``alarm_step`` is the 0-based
    step (of the whole stream) of the first alarm of any monitor and ``alarm_source`` which one
    raised it (``"overall"`` or ``"group <label>"``).
    """

    group_monitors: tuple[Any, ...] = ()
    alarm_source: str | None = None

    _json_guarantee = (
        "State of a streaming grouped CTD delegator, its overall and per-group anytime-valid "
        "budget monitors: restoring it and continuing gives exactly the decisions and e-values "
        "of an uninterrupted run."
    )

    def __repr__(self) -> str:
        return result_repr(
            self,
            f"t={self.t}, alarm_step={self.alarm_step}, alarm_source={self.alarm_source}",
            [
                ("monitor", headline(self.monitor)),
                ("group_monitors", f"{sum(m is not None for m in self.group_monitors)} groups"),
            ],
        )


def check_score(score: object) -> float:
    if isinstance(score, (bool, np.bool_)) or not isinstance(
        score, (int, float, np.integer, np.floating)
    ):
        raise TypeError(f"score: expected one number, got {type(score).__name__}")
    value = float(score)
    if not math.isfinite(value):
        raise ValueError(f"score: must be finite, got {plain(score)}")
    return value


class Delegator:
    """Decide, one input at a time, whether to call the expert, and watch the budget.

    Built from a calibrated policy: the score of an input is a DV score (CTD, budget-only LTT)
    or a probe score (Unc. calibrated; turned into u = −|F̂(p) − 0.5| with the stored
    calibration reference). If nothing was certified at calibration (τ = +∞) it never delegates.
    A :class:`~ctd_stats._streaming.StreamingMonitor` itself (``update(state, score, /)``).

    ``monitor``: ``True`` (default) attaches a :class:`BudgetMonitor` at the calibration's
    budget with ``level`` and ``strategy``; ``False`` none; or pass any
    :class:`~ctd_stats._streaming.StreamingMonitor`: it is fed each decision (``True`` /
    ``False``) through its public ``update`` (or its vectorised ``run(x, /, *, state=)`` in
    :meth:`decide_stream` when it has one), as optax's ``chain`` composes transformations. A
    budget of 1 cannot be exceeded, so ``True`` then attaches no monitor. Immutable.

    Grouped calibration: each input comes with its group (``group=`` / ``groups=``; required in
    per-group mode, optional in shared mode, where an input without a group feeds only the
    overall monitor) and is decided at :meth:`ThresholdCalibration.threshold_for` its group.
    ``monitor=True`` attaches a :class:`BudgetMonitor` per group at its cap, fed only that
    group's decisions, beside the overall one at α (none at α = 1). The level is split by
    Bonferroni over the K monitors (K = G + 1 with the overall monitor, G without): each alarms
    at ``level / K``, so on streams within every cap the delegator ever alarms with probability
    ≤ ``level`` (Ville per monitor, union bound; plus the calibration's δ as for one monitor).
    ``Step.statistic`` is the largest current log e-value of the monitors (alarm iff it reaches
    log(K / level)). A custom ``monitor`` is the overall monitor and no group monitors are
    attached.
    """

    __slots__ = ("_group_monitors", "_ref", "calibration", "monitor")

    calibration: ThresholdCalibration
    monitor: StreamingMonitor[Any] | None
    _ref: list[float] | None
    _group_monitors: tuple[BudgetMonitor, ...] | None

    def __init__(
        self,
        calibration: ThresholdCalibration,
        *,
        monitor: bool | StreamingMonitor[Any] = True,
        level: float = 0.05,
        strategy: str = "ons",
    ) -> None:
        if not isinstance(calibration, ThresholdCalibration):
            raise TypeError(
                f"calibration: expected a ThresholdCalibration, got {type(calibration).__name__}"
            )
        mon: StreamingMonitor[Any] | None
        groups: tuple[BudgetMonitor, ...] | None = None
        if isinstance(monitor, (bool, np.bool_)) and calibration.groups is not None:
            use = bool(monitor) and calibration.alpha < 1.0
            caps = calibration.group_alpha
            assert caps is not None
            k = caps.size + int(use) if monitor else 1
            split = level / k  # Bonferroni over the overall and the group monitors
            mon = BudgetMonitor(calibration.alpha, level=split, strategy=strategy) if use else None
            if monitor:
                groups = tuple(
                    BudgetMonitor(a, level=split, strategy=strategy) for a in caps.tolist()
                )
        elif isinstance(monitor, (bool, np.bool_)):
            # α = 1: every rate is within budget, so there is nothing to monitor.
            use = bool(monitor) and calibration.alpha < 1.0
            mon = BudgetMonitor(calibration.alpha, level=level, strategy=strategy) if use else None
        elif isinstance(monitor, StreamingMonitor):
            mon = monitor
        else:
            raise TypeError(f"monitor: expected a bool or a StreamingMonitor, got {plain(monitor)}")
        object.__setattr__(self, "calibration", calibration)
        object.__setattr__(self, "monitor", mon)
        object.__setattr__(self, "_group_monitors", groups)
        ref = calibration.reference
        object.__setattr__(self, "_ref", None if ref is None else ref.tolist())

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Delegator is immutable")

    def __repr__(self) -> str:
        c = self.calibration
        lines: list[tuple[str, Any]] = [("monitor", headline(self.monitor))]
        if c.groups is not None:
            gm = self._group_monitors
            lines.append(("groups", f"{len(c.groups)} {c.group_mode}, monitors: {len(gm or ())}"))
        return result_repr(
            self,
            f"{c.method}, found={c.found}, threshold={fmt(c.threshold)}, alpha={fmt(c.alpha)}",
            lines,
        )

    @property
    def threshold(self) -> float:
        return self.calibration.threshold

    # ------------------------------------------------------------------ protocol
    def init(self) -> DelegatorState:
        """The state before any input (a :class:`GroupedDelegatorState` when grouped)."""
        mstate = None if self.monitor is None else self.monitor.init()
        if self.calibration.groups is None:
            return DelegatorState(t=0, monitor=mstate)
        gm = self._group_monitors
        n_groups = len(self.calibration.groups)
        states = (None,) * n_groups if gm is None else tuple(m.init() for m in gm)
        return GroupedDelegatorState(t=0, monitor=mstate, group_monitors=states)

    def update(
        self, state: DelegatorState, score: float, /, *, group: GroupLabel | None = None
    ) -> tuple[DelegatorState, Step]:
        """Decide for one input from its raw score; pure. ``step.delegated`` is the decision.

        ``group``: the input's group (grouped calibrations; required in per-group mode,
        ignored by an ungrouped calibration).
        """
        if self.calibration.groups is not None:
            return self._update_grouped(state, score, group)
        check_state(state, DelegatorState)
        value = check_score(score)
        signal = value
        if self._ref is not None:
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"score: a probe score must lie in [0, 1], got {plain(value)}")
            signal = uncertainty_from_sorted(value, self._ref)
        delegated = signal > self.calibration.threshold
        if self.monitor is None:
            step = Step(state.t, value, 0.0, False, False, None, delegated)
            return DelegatorState(t=state.t + 1, monitor=None), step
        mstate, ms = self.monitor.update(state.monitor, delegated)
        step = Step(state.t, value, ms.statistic, ms.alarm, ms.new_alarm, ms.alarm_step, delegated)
        return DelegatorState(t=state.t + 1, monitor=mstate, alarm_step=ms.alarm_step), step

    def _signal(self, value: float) -> float:
        if self._ref is None:
            return value
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"score: a probe score must lie in [0, 1], got {plain(value)}")
        return uncertainty_from_sorted(value, self._ref)

    def _update_grouped(
        self, state: DelegatorState, score: float, group: GroupLabel | None
    ) -> tuple[GroupedDelegatorState, Step]:
        st = check_state(state, GroupedDelegatorState)
        c = self.calibration
        value = check_score(score)
        if group is None:
            if c.group_mode == "per_group":
                raise ValueError("group: required by a per-group calibration (one threshold each)")
            gi = None
        else:
            gi = c.group_index(group)
        assert c.groups is not None and c.group_thresholds is not None
        threshold = c.threshold if gi is None else float(c.group_thresholds[gi])
        delegated = self._signal(value) > threshold
        mstate, gstates = st.monitor, list(st.group_monitors)
        stats: list[float] = []
        alarm_step, source = st.alarm_step, st.alarm_source
        if self.monitor is not None:
            mstate, ms = self.monitor.update(st.monitor, delegated)
            stats.append(ms.statistic)
            if ms.new_alarm and alarm_step is None:
                alarm_step, source = st.t, "overall"
        if self._group_monitors is not None:
            if gi is not None:
                gstates[gi], gs = self._group_monitors[gi].update(gstates[gi], delegated)
                if gs.new_alarm and alarm_step is None:
                    alarm_step, source = st.t, f"group {c.groups[gi]!r}"
            stats += [g.log_wealth for g in gstates]
        alarm = alarm_step is not None
        new = alarm and alarm_step == st.t
        statistic = max(stats) if stats else 0.0
        step = Step(st.t, value, statistic, alarm, new, alarm_step, delegated)
        out = GroupedDelegatorState(
            t=st.t + 1,
            monitor=mstate,
            alarm_step=alarm_step,
            group_monitors=tuple(gstates),
            alarm_source=source,
        )
        return out, step

    def decide_stream(
        self,
        scores: ArrayLike,
        /,
        *,
        groups: ArrayLike | None = None,
        state: DelegatorState | None = None,
    ) -> Trace[DelegatorState]:
        """Decisions for a stretch of inputs, each made on its own score alone.

        Identical to calling :meth:`update` on each element in order (tested), but vectorised:
        the threshold comparison on the whole array, then the monitor's ``run`` (or its
        ``update`` in a loop when it has no ``run``). ``groups``: one label per input (grouped
        calibrations; required in per-group mode; ignored by an ungrouped calibration). A
        grouped delegator does the same per monitor: each input's threshold from its group and
        all decisions at once, then the overall budget monitor on every decision and each group's
        monitor on its group's decisions (their ``run``; a monitor not of the package through
        its ``update``), the statistic and the first alarm put back in stream order; where a
        probe score or a state would make :meth:`update` raise, it runs :meth:`update` in a loop
        so that the error is the same.
        """
        if self.calibration.groups is not None:
            return self._stream_grouped(scores, groups, state)
        state = self.init() if state is None else check_state(state, DelegatorState)
        c = self.calibration
        if c.signal == "uncertainty":
            x = as_float_array(scores, "scores", ndim=1, low=0.0, high=1.0)
            assert c.reference is not None
            signal = uncertainty_from_sorted(x, c.reference)
        else:
            x = signal = as_float_array(scores, "scores", ndim=1)
        d = np.asarray(signal > c.threshold)  # τ = +∞ when nothing was certified: never
        n = int(d.size)
        if self.monitor is None:
            new = DelegatorState(t=state.t + n, monitor=None)
            return Trace(x, np.zeros(n), None, new, start=state.t, delegated=d)
        if isinstance(self.monitor, BatchMonitor):
            mtrace = self.monitor.run(d, state=state.monitor)
        else:
            mtrace = trace_by_updates(
                self.monitor, d.tolist(), state.monitor, start=state.t, alarm_step=state.alarm_step
            )
        new = DelegatorState(t=state.t + n, monitor=mtrace.state, alarm_step=mtrace.alarm_step)
        return Trace(x, mtrace.statistic, mtrace.alarm_step, new, start=state.t, delegated=d)

    def _stream_grouped(
        self, scores: ArrayLike, groups: ArrayLike | None, state: DelegatorState | None
    ) -> Trace[DelegatorState]:
        st = self.init() if state is None else check_state(state, GroupedDelegatorState)
        assert isinstance(st, GroupedDelegatorState)
        c = self.calibration
        x = as_float_array(scores, "scores", ndim=1)
        names: tuple[GroupLabel, ...] = ()
        index = inverse = None
        if groups is None:
            if c.group_mode == "per_group":
                raise ValueError("groups: required by a per-group calibration (one threshold each)")
        else:
            names, inverse = group_labels(groups, "groups")
            if inverse.size != x.size:
                raise ValueError(f"groups: length {inverse.size} does not match scores ({x.size})")
            # unknown groups fail before any decision
            index = np.array([c.group_index(g) for g in names], dtype=np.int64)[inverse]
        run = grouped_stream(c, self.monitor, self._group_monitors, x, index, st)
        if run is None:  # the loop raises where update would (see _grouped_stream)
            labels = [None] * x.size if inverse is None else [names[i] for i in inverse.tolist()]
            return self._stream_grouped_loop(x, labels, st)
        new = GroupedDelegatorState(
            t=st.t + x.size,
            monitor=run.monitor,
            alarm_step=run.alarm_step,
            group_monitors=run.group_monitors,
            alarm_source=run.alarm_source,
        )
        return Trace(x, run.statistic, run.alarm_step, new, start=st.t, delegated=run.delegated)

    def _stream_grouped_loop(
        self, x: FloatArray, labels: list[GroupLabel | None], st: DelegatorState
    ) -> Trace[DelegatorState]:
        """:meth:`update` on each input in order (the reference of :func:`grouped_stream`)."""
        start = st.t
        stats = np.empty(x.size)
        d = np.empty(x.size, dtype=bool)
        for i, (value, group) in enumerate(zip(x.tolist(), labels, strict=True)):
            st, step = self._update_grouped(st, value, group)
            stats[i], d[i] = step.statistic, bool(step.delegated)
        return Trace(x, stats, st.alarm_step, st, start=start, delegated=d)

    @staticmethod
    def output(
        probe: float, expert: float | None, delegated: bool | Step, *, merge: Merge = "replace"
    ) -> float:
        """The cascade score for one input: the probe's, or the expert's (or the average)."""
        check_choice(merge, "merge", MERGES)
        if isinstance(delegated, Step):
            if delegated.delegated is None:
                raise ValueError("delegated: this Step carries no delegation decision")
            delegated = delegated.delegated
        p = float(probe)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"probe: must lie in [0, 1], got {plain(probe)}")
        if not delegated:
            return p
        if expert is None:
            raise ValueError("expert: required for a delegated input")
        e = float(expert)
        if not 0.0 <= e <= 1.0:
            raise ValueError(f"expert: must lie in [0, 1], got {plain(expert)}")
        return e if merge == "replace" else 0.5 * (p + e)


class DelegationSession:
    """A :class:`Delegator` together with its current state (a convenience for live serving).

    Holds a state and calls only the pure :meth:`Delegator.update` /
    :meth:`Delegator.decide_stream`; :meth:`checkpoint` / :meth:`restore` go through the exact
    JSON of the state.
    """

    def __init__(self, delegator: Delegator, state: DelegatorState | None = None) -> None:
        if not isinstance(delegator, Delegator):
            raise TypeError(f"delegator: expected a Delegator, got {type(delegator).__name__}")
        self.delegator = delegator
        self.state = delegator.init() if state is None else state

    def __repr__(self) -> str:
        return result_repr(self, f"t={self.state.t}", [("delegator", repr(self.delegator))])

    @property
    def needs_recalibration(self) -> bool:
        return self.state.needs_recalibration

    def decide(self, score: float, *, group: GroupLabel | None = None) -> Step:
        """Decide for one input (of ``group``, for a grouped calibration) and advance the state."""
        self.state, step = self.delegator.update(self.state, score, group=group)
        return step

    def decide_stream(
        self, scores: ArrayLike, *, groups: ArrayLike | None = None
    ) -> Trace[DelegatorState]:
        """Decide a stretch of inputs (with their ``groups`` when grouped) and advance the state."""
        trace = self.delegator.decide_stream(scores, groups=groups, state=self.state)
        self.state = trace.state
        return trace

    def reset(self) -> None:
        """Forget the stream (e.g. after recalibrating)."""
        self.state = self.delegator.init()

    def checkpoint(self) -> str:
        """The state as exact JSON."""
        return self.state.to_json()

    @classmethod
    def restore(cls, delegator: Delegator, text: str) -> DelegationSession:
        """A session continuing from a :meth:`checkpoint`."""
        kind = GroupedDelegatorState if delegator.calibration.groups is not None else DelegatorState
        return cls(delegator, kind.from_json(text))
