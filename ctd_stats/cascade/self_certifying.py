"""A delegator that certifies its own threshold while deployed (beyond the CTD paper).

The :class:`~ctd_stats.cascade.Delegator` applies a threshold certified once on a held-out batch
(CTD paper §4.2) and its budget monitor can only say "recalibrate". A
:class:`SelfCertifyingDelegator` instead runs an :class:`~ctd_stats.online.AnytimeLTT` on the
budget losses of the stream itself: at input t the loss of grid threshold λ_j is the delegation
indicator 1[d_t > λ_j], computed from the DV score alone (no label), so every grid threshold is
tested on every input, whichever one is deployed.

* It starts at the most conservative choice, τ = +∞ (never delegate: nothing is certified), or
  at the batch warm start's certified threshold (δ = δ_batch + δ_online, union bound), and moves
  to the most aggressive certified threshold as evidence arrives. The threshold used on input t
  is fixed by inputs < t (predictable).
* The deployed decisions feed a :class:`~ctd_stats.cascade.BudgetMonitor` at the same budget α
  (anytime valid at ``level``): a certificate says the rate was ≤ α at some times, not that it
  still is. On an alarm (a stopping time) the certifier restarts on post-alarm data only, in a
  new epoch at δ/2^(e+1), and the monitor starts afresh; the threshold falls back to +∞ until
  the new epoch certifies one.

Guarantee (Waudby-Smith & Ramdas 2024, testing by betting with Ville's inequality; LTT's fixed
sequence, Angelopoulos et al. 2022, Sec. 3; δ spent over epochs by a union bound): with
probability ≥ 1 − δ, at every input of the whole deployment, the deployed threshold τ_t was
certified in its epoch, i.e. it is +∞ or its conditional delegation rate has been ≤ α on the
epoch's data in the sense of the betting test (the null "rate ≥ α at every step of the epoch"
was rejected). The budget monitor alarms on a stream whose rate stays ≤ α with probability
≤ ``level`` per epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .._repr import fmt, result_repr
from .._serialize import JSONSerializable, exact_eq
from .._streaming import NO_ALARM, Step, Trace, check_state
from .._validation import as_float_array, check_grid
from ..fwer import resolve_order
from ..online.anytime_ltt import AnytimeLTT, AnytimeLTTState
from ..online.betting import BettingState
from ..typing import FloatArray, IntArray
from .delegator import check_score
from .streaming import BudgetMonitor

__all__ = [
    "SelfCertifyingDelegator",
    "SelfCertifyingState",
    "SelfCertifyingStep",
    "SelfCertifyingTrace",
]

#: Inputs × grid points per pass of :meth:`SelfCertifyingDelegator.decide_stream`.
_PASS_CELLS = 1 << 22


@exact_eq
@dataclass(frozen=True, repr=False)
class SelfCertifyingState(JSONSerializable, kind="ctd_stats.SelfCertifyingState"):
    """A :class:`SelfCertifyingDelegator` after ``t`` inputs.

    Attributes
    ----------
    t
        Inputs seen over the whole deployment.
    certifier
        The :class:`~ctd_stats.online.AnytimeLTTState` (its ``epoch`` counts restarts).
    monitor
        The budget monitor's :class:`~ctd_stats.online.BettingState` for the current epoch.
    threshold
        The threshold deployed on the next input (``inf``: nothing certified, never delegate).
    restarts
        0-based inputs at which the budget monitor alarmed and certification restarted.
    """

    t: int
    certifier: AnytimeLTTState
    monitor: BettingState
    threshold: float
    restarts: tuple[int, ...] = ()

    _json_guarantee = (
        "State of a self-certifying delegator (anytime-valid Learn-then-Test on the budget "
        "losses, restarted after budget alarms): restoring it and continuing gives exactly the "
        "decisions, thresholds and e-values of an uninterrupted run."
    )

    @property
    def epoch(self) -> int:
        return self.certifier.epoch

    def __repr__(self) -> str:
        return result_repr(
            self,
            f"t={self.t}, threshold={fmt(self.threshold)}, epoch={self.epoch}",
            [("restarts", list(self.restarts)), "certifier", "monitor"],
        )


@dataclass(frozen=True, repr=False)
class SelfCertifyingStep(Step):
    """The :class:`~ctd_stats._streaming.Step` of one input, with the certification facts.

    ``statistic``/``alarm``/``new_alarm``/``alarm_step`` are the budget monitor's (its epoch;
    ``alarm_step`` counted from the deployment's start). ``threshold`` is the threshold used on
    this input, ``next_threshold`` the one for the next, ``restarted`` whether this input's
    alarm restarted certification, ``epoch`` the epoch this input belonged to.
    """

    threshold: float = math.inf
    next_threshold: float = math.inf
    restarted: bool = False
    epoch: int = 0

    def __repr__(self) -> str:
        return result_repr(
            self,
            f"t={self.t}, delegated={self.delegated}, threshold={fmt(self.threshold)}",
            [("next_threshold", self.next_threshold), ("restarted", self.restarted)],
        )


@dataclass(frozen=True, repr=False)
class SelfCertifyingTrace(Trace[SelfCertifyingState]):
    """A stretch processed by :meth:`SelfCertifyingDelegator.decide_stream`.

    On top of :class:`~ctd_stats._streaming.Trace` (``alarm_step`` = the first alarm of the
    deployment, ``statistic`` = the budget monitor's log e-value of each input's epoch):
    ``threshold`` (T,) used on each input and ``restarts`` the steps (counted from the
    deployment's start) whose alarm restarted certification in this stretch.
    """

    threshold: FloatArray = field(default_factory=lambda: np.zeros(0))
    restarts: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def changes(self) -> IntArray:
        """Steps whose threshold differs from the previous input's (in this stretch)."""
        moved = np.flatnonzero(self.threshold[1:] != self.threshold[:-1]) + 1
        return np.asarray(moved + self.start, dtype=np.int64)

    def __repr__(self) -> str:
        n, d = self.x.size, self.delegated
        return result_repr(
            "SelfCertifyingTrace",
            f"steps {self.start}..{self.start + n - 1}, restarts={self.restarts.tolist()}",
            [
                ("delegated", f"{0 if d is None else int(d.sum())} of {n}"),
                ("threshold", self.threshold),
                ("changes", self.changes.size),
            ],
        )


class SelfCertifyingDelegator:
    """Delegate iff the DV score exceeds a threshold certified online on the stream itself.

    Parameters
    ----------
    grid
        Candidate thresholds on the DV score, strictly increasing (m points): delegate iff
        score > λ.
    certifier
        An :class:`~ctd_stats.online.AnytimeLTT` over the m grid points with one risk (the
        budget, losses in [0, 1]) and ``max_epochs=None`` (δ/2^(e+1) per epoch, as many
        restarts as alarms). Its ``order`` lists the grid from most conservative (largest λ,
        ``"descending"``); its ``warm_start`` (a batch :class:`~ctd_stats.LTTResult` on the
        budget losses of a calibration sample) is deployed in epoch 0 until the online
        certificate is more aggressive.
    level
        Type-I error of the budget monitor's alarm (per epoch).
    strategy
        Bet strategy of the budget monitor (as :class:`~ctd_stats.cascade.BudgetMonitor`).

    Notes
    -----
    See the module docstring for the guarantee and the restart rule. A streaming monitor
    (``init()``, ``update(state, score, /)``); :meth:`decide_stream` processes a stretch at once
    with exactly the results of one-at-a-time :meth:`update` calls.

    Examples
    --------
    >>> import numpy as np
    >>> from ctd_stats.online import AnytimeLTT
    >>> grid = np.linspace(0, 1, 101)
    >>> cert = AnytimeLTT(101, alpha=0.2, delta=0.1, order="descending", max_epochs=None)
    >>> dg = SelfCertifyingDelegator(grid, cert)
    >>> trace = dg.decide_stream(np.random.default_rng(0).uniform(size=5000))
    >>> bool(trace.threshold[0] == np.inf), bool(0.8 <= trace.state.threshold < 0.9)
    (True, True)
    """

    __slots__ = ("_batch", "_rank", "certifier", "grid", "monitor")

    grid: FloatArray
    certifier: AnytimeLTT
    monitor: BudgetMonitor
    _rank: IntArray
    _batch: int | None

    def __init__(
        self,
        grid: ArrayLike,
        certifier: AnytimeLTT,
        *,
        level: float = 0.05,
        strategy: str = "ons",
    ) -> None:
        g = check_grid(grid, "grid")
        if not isinstance(certifier, AnytimeLTT):
            raise TypeError(f"certifier: expected an AnytimeLTT, got {type(certifier).__name__}")
        if certifier.m != g.size:
            raise ValueError(f"certifier: has {certifier.m} grid points, the grid {g.size}")
        if certifier.n_risks != 1 or not np.all(np.asarray(certifier.bound) == 1.0):
            raise ValueError("certifier: must certify one risk, the budget, with bound=1")
        if certifier.max_epochs is not None:
            raise ValueError(
                "certifier: needs max_epochs=None (delta/2^(e+1) per epoch) so that every "
                "budget alarm can restart certification"
            )
        alpha = float(np.asarray(certifier.alpha, dtype=np.float64).reshape(-1)[0])
        rank = np.full(g.size, -1, dtype=np.int64)
        order = resolve_order(certifier.order, g.size)
        rank[order] = np.arange(order.size)
        ws = certifier.warm_start
        g.setflags(write=False)
        put = object.__setattr__
        put(self, "grid", g)
        put(self, "certifier", certifier)
        put(self, "monitor", BudgetMonitor(alpha, level=level, strategy=strategy))
        put(self, "_rank", rank)
        put(self, "_batch", None if ws is None else ws.select_index("most_aggressive"))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("SelfCertifyingDelegator is immutable")

    def __repr__(self) -> str:
        c = self.certifier
        return result_repr(
            self,
            f"m={c.m}, alpha={fmt(self.monitor.alpha)}, delta={fmt(c.delta)}",
            [("monitor", repr(self.monitor)), ("warm_start", self._batch)],
        )

    # ------------------------------------------------------------------ protocol
    def init(self) -> SelfCertifyingState:
        """The state before any input (epoch 0; the warm start's threshold, or +∞)."""
        cstate = self.certifier.init()
        return SelfCertifyingState(0, cstate, self.monitor.init(), self._threshold(cstate))

    def update(
        self, state: SelfCertifyingState, score: float, /
    ) -> tuple[SelfCertifyingState, SelfCertifyingStep]:
        """Decide for one input from its DV score, then test every grid threshold on it."""
        self._check(state)
        value = check_score(score)
        delegated = value > state.threshold
        mstate, ms = self.monitor.update(state.monitor, delegated)
        losses = (value > self.grid).astype(np.float64)
        cstate, _ = self.certifier.update(state.certifier, losses)
        epoch, start = cstate.epoch, state.certifier.epoch_start
        restarts = state.restarts
        if ms.new_alarm:
            cstate, mstate = self.certifier.restart(cstate), self.monitor.init()
            restarts = (*restarts, state.t)
        nxt = self._threshold(cstate)
        step = SelfCertifyingStep(
            t=state.t,
            x=value,
            statistic=ms.statistic,
            alarm=ms.alarm,
            new_alarm=ms.new_alarm,
            alarm_step=None if ms.alarm_step is None else start + ms.alarm_step,
            delegated=delegated,
            threshold=state.threshold,
            next_threshold=nxt,
            restarted=ms.new_alarm,
            epoch=epoch,
        )
        return SelfCertifyingState(state.t + 1, cstate, mstate, nxt, restarts), step

    def decide_stream(
        self, scores: ArrayLike, /, *, state: SelfCertifyingState | None = None
    ) -> SelfCertifyingTrace:
        """Decisions for a stretch of inputs: exactly those of :meth:`update` in a loop.

        Vectorised: the certifier's batch ``run`` gives the certified index after every input,
        hence the threshold used on each next one; the monitor's ``run`` then finds the first
        alarm, if any, and the stretch is cut there, certification restarted, and continued.
        """
        state = self.init() if state is None else state
        self._check(state)
        x = as_float_array(scores, "scores", ndim=1)
        n = x.size
        delegated = np.zeros(n, dtype=bool)
        statistic = np.zeros(n)
        threshold = np.zeros(n)
        restarts: list[int] = []
        cstate, mstate, tau = state.certifier, state.monitor, state.threshold
        rows = max(1, _PASS_CELLS // self.grid.size)
        pos = 0
        while pos < n:
            seg = x[pos : pos + rows]
            losses = (seg[:, None] > self.grid[None, :]).astype(np.float64)
            run = self.certifier.run(cstate, losses)
            after = self._thresholds(run.index, cstate.epoch)  # deployed after each input
            used = np.concatenate(([tau], after[:-1]))
            d = seg > used
            mtrace = self.monitor.run(d, state=mstate)
            cut = seg.size
            if mtrace.alarm_step is not None:  # the monitor is fresh: a new alarm in here
                cut = mtrace.alarm_step - mstate.t + 1
            delegated[pos : pos + cut] = d[:cut]
            statistic[pos : pos + cut] = mtrace.statistic[:cut]
            threshold[pos : pos + cut] = used[:cut]
            if cut == seg.size and mtrace.alarm_step is None:
                cstate, mstate, tau = run.state, mtrace.state, float(after[-1])
            else:
                cstate = self.certifier.restart(self.certifier.run(cstate, losses[:cut]).state)
                mstate = self.monitor.init()
                tau = self._threshold(cstate)
                restarts.append(state.t + pos + cut - 1)
            pos += cut
        new = SelfCertifyingState(state.t + n, cstate, mstate, tau, (*state.restarts, *restarts))
        every = new.restarts
        return SelfCertifyingTrace(
            x=x,
            statistic=statistic,
            alarm_step=every[0] if every else None,
            state=new,
            start=state.t,
            delegated=delegated,
            threshold=threshold,
            restarts=np.asarray(restarts, dtype=np.int64),
        )

    def restore(self, text: str, /) -> SelfCertifyingState:
        """A state from :meth:`SelfCertifyingState.to_json`, refused if from another config."""
        state = SelfCertifyingState.from_json(text)
        self._check(state)
        return state

    # ------------------------------------------------------------------ internals
    def _check(self, state: object) -> None:
        state = check_state(state, SelfCertifyingState)
        if state.certifier.fingerprint != self.certifier.fingerprint:
            raise ValueError("state: was made by a delegator with another certifier")

    def _threshold(self, cstate: AnytimeLTTState) -> float:
        j = self.certifier.deployable_index(cstate)
        return math.inf if j is None else float(self.grid[j])

    def _thresholds(self, index: IntArray, epoch: int) -> FloatArray:
        """Deployed threshold for each online certified index (NO_ALARM: none), in ``epoch``."""
        if epoch == 0 and self._batch is not None:  # the more aggressive of batch and online
            online_rank = np.where(index == NO_ALARM, -1, self._rank[np.maximum(index, 0)])
            index = np.where(self._rank[self._batch] > online_rank, self._batch, index)
        safe = self.grid[np.maximum(index, 0)]
        return np.where(index == NO_ALARM, math.inf, safe)
