"""Anytime-valid Learn-then-Test: certify thresholds while deployed, with a guarantee at all times.

Batch LTT (Angelopoulos et al. 2022) certifies a grid of thresholds once, on a held-out batch.
Here the losses arrive one input at a time and each grid threshold λ_j gets a betting e-process
for its null

    H0^j: E[L_t^j | past] ≥ α at every t          (losses L_t^j ∈ [0, B])

(Waudby-Smith & Ramdas 2024, Sec. 4: testing by betting). The wealth is the package's one betting
monitor run on x_t = 1 − L_t^j / B with null rate α' = 1 − α/B, so each factor is

    1 + λ_t (x_t − α') = 1 + (λ_t / B)(α − L_t^j),   λ_t ∈ [0, c/α'] predictable, c < 1,

and K^j is a non-negative supermartingale under H0^j: by Ville's inequality
P(∃t: K_t^j ≥ 1/δ) ≤ δ. The certified set is the fixed-sequence prefix of the testing order (most
conservative first) whose running-max wealth has crossed 1/δ: a false certification anywhere
needs the first true null in the order to cross, so

    P(∃t: some certified λ_j has risk > α) ≤ δ        (at every time simultaneously).

Certification only grows. With several risks a threshold is certified once every risk's wealth
has crossed (intersection–union). Losses that need a label may be importance weighted
(:mod:`ctd_stats.online.anytime_audit`; Xu, Wang & Ramdas 2024): the same test with bound B/π_min.

Epochs: a restart (after a drift alarm; its time is a stopping time) starts fresh wealth on the
data that follow, spending δ over epochs (δ_e = δ/2^(e+1) with unbounded restarts, or δ/E for at
most E epochs) so that the guarantee covers the whole deployment (union bound over epochs).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike

from .._streaming import NO_ALARM
from .._validation import (
    as_float_array,
    check_choice,
    check_level,
    check_positive_int,
    plain,
)
from ..fwer import Order, resolve_order
from ..ltt import LTTResult
from ..typing import BoolArray, FloatArray, IntArray
from ._anytime_run import run_blocks
from ._bet import bet_start, bet_step
from .anytime_state import AnytimeLTTRun, AnytimeLTTState, CertificationStep

__all__ = ["AnytimeLTT", "AnytimeLTTRun", "AnytimeLTTState", "CertificationStep"]

_STRATEGIES: Final[tuple[str, ...]] = ("ons", "agrapa", "fixed")
#: Cells (rows × r·m) per block of the batch path: its four 0.5 MB buffers fit in L2 cache.
_BLOCK_CELLS: Final[int] = 1 << 16


def _frozen(a: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class AnytimeLTT:
    """Anytime-valid Learn-then-Test over m grid thresholds: certify while deployed.

    Parameters
    ----------
    m
        Number of grid thresholds; an input is the vector of their m losses in grid order.
    alpha
        Risk level(s), one per risk (a scalar for one risk), each in (0, bound).
    delta
        Probability that any certification (over the whole deployment) is false, in (0, 1).
    order
        Testing order, most conservative first: ``"ascending"``, ``"descending"`` or indices
        (as in :func:`ctd_stats.learn_then_test`); fixed before seeing the data.
    bound
        Upper bound B of the losses, one per risk or shared (1 for indicators, B/π_min for an
        importance-weighted audit loss).
    strategy, max_bet_fraction, fixed_fraction
        The bet kernel's options (as :class:`ctd_stats.online.BettingMonitor`): bets are
        predictable and capped at ``max_bet_fraction``/α'. The default ``"agrapa"``
        (approximate GRAPA, Waudby-Smith & Ramdas 2024: from the running mean and variance)
        depends on the data only through running sums, so :meth:`run` computes a whole block
        of bets at once; ``"ons"`` (online Newton step) is as valid (every predictable bet in
        [0, cap] is) but sequential, about half as fast in :meth:`run`.
    max_epochs
        ``1`` (default): no restarts, the whole δ in one epoch. ``E``: at most E epochs at δ/E
        each. ``None``: unbounded restarts, epoch e at δ/2^(e+1).
    warm_start
        A batch :class:`~ctd_stats.LTTResult` on a calibration sample (same α and order) whose
        ``delta`` is δ_batch < δ: the online certifier then spends δ − δ_batch, and
        :meth:`deployable_index` may use the batch certificate in epoch 0 (union bound: both
        hold at once with probability ≥ 1 − δ).

    Notes
    -----
    Guarantee: if for every grid point j whose risk exceeds α the conditional risk
    E[L_t^j | past] stays ≥ α, then with probability ≥ 1 − δ, at every time simultaneously,
    every certified threshold has risk ≤ α for every risk. Each threshold's wealth is a
    non-negative supermartingale under its null (testing by betting, Waudby-Smith & Ramdas 2024,
    Sec. 4; Ville's inequality), the certified set is a fixed sequence over the order (LTT,
    Angelopoulos et al. 2022, Sec. 3), several risks combine by intersection–union, and
    importance-weighted labels keep the conditional mean (Xu, Wang & Ramdas 2024). Restarts
    happen at stopping times and epochs spend δ_e with Σ δ_e ≤ δ.

    Examples
    --------
    >>> import numpy as np
    >>> grid = np.linspace(0, 1, 21)
    >>> scores = np.random.default_rng(0).uniform(size=3000)
    >>> losses = scores[:, None] > grid[None, :]           # delegated at λ_j: rate 1 − λ_j
    >>> mon = AnytimeLTT(21, alpha=0.2, delta=0.1, order="descending")
    >>> out = mon.run(mon.init(), losses)
    >>> bool(grid[out.state.index] >= 0.8)                 # certified rates are <= 0.2
    True
    """

    m: int
    alpha: float | ArrayLike
    delta: float
    order: Order
    bound: float | ArrayLike = 1.0
    strategy: str = "agrapa"
    max_bet_fraction: float = 0.5
    fixed_fraction: float = 0.5
    max_epochs: int | None = 1
    warm_start: LTTResult | None = None
    # Derived in __post_init__ from the validated settings.
    n_risks: int = field(init=False, repr=False)
    fingerprint: str = field(init=False, repr=False)
    _idx: IntArray = field(init=False, repr=False)
    _rank: IntArray = field(init=False, repr=False)
    _bounds: FloatArray = field(init=False, repr=False)
    _delta_online: float = field(init=False, repr=False)
    _rate: float | FloatArray = field(init=False, repr=False)
    _cap: float | FloatArray = field(init=False, repr=False)
    _stream_bound: FloatArray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        m = check_positive_int(self.m, "m")
        delta = check_level(self.delta, "delta")
        alphas = np.atleast_1d(as_float_array(self.alpha, "alpha", ndim=(0, 1)))
        bounds = np.atleast_1d(as_float_array(self.bound, "bound", ndim=(0, 1)))
        if bounds.min() <= 0.0:
            raise ValueError(f"bound: must be positive, got {plain(self.bound)}")
        if bounds.size not in (1, alphas.size):
            raise ValueError(
                f"bound: give one bound or one per risk ({alphas.size}), got {bounds.size}"
            )
        bounds = np.broadcast_to(bounds, alphas.shape).copy()
        if np.any(alphas <= 0.0) or np.any(alphas >= bounds):
            raise ValueError(f"alpha: each level must lie in (0, bound), got {plain(self.alpha)}")
        check_choice(self.strategy, "strategy", _STRATEGIES)
        check_level(self.max_bet_fraction, "max_bet_fraction")
        check_level(self.fixed_fraction, "fixed_fraction", closed_right=True)
        if self.max_epochs is not None:
            check_positive_int(self.max_epochs, "max_epochs")
        idx = resolve_order(self.order, m)
        delta_online = delta
        if self.warm_start is not None:
            delta_online = self._check_warm_start(self.warm_start, m, alphas, idx, delta)
        # x = 1 − L/B, null rate α' = 1 − α/B; one stream per (risk, grid point), flattened.
        null_rate = 1.0 - alphas / bounds
        r = alphas.size
        stream_rate = np.repeat(null_rate, m)
        cap = self.max_bet_fraction / stream_rate
        put = object.__setattr__  # derived, validated configuration of a frozen dataclass
        put(self, "n_risks", r)
        put(self, "_idx", _frozen(idx))
        rank = np.full(m, -1, dtype=np.int64)  # position in the order (−1: never tested)
        rank[idx] = np.arange(idx.size)
        put(self, "_rank", _frozen(rank))
        put(self, "_bounds", _frozen(bounds))
        put(self, "_delta_online", delta_online)
        # A scalar null rate and cap for one risk: the kernel then runs on the same numbers as
        # the betting monitor (identical bits either way).
        put(self, "_rate", float(null_rate[0]) if r == 1 else _frozen(stream_rate))
        put(self, "_cap", float(cap[0]) if r == 1 else _frozen(cap))
        put(self, "_stream_bound", _frozen(np.repeat(bounds, m)))
        key = repr(
            (
                m,
                idx.tolist(),
                alphas.tolist(),
                delta,
                bounds.tolist(),
                self.strategy,
                self.max_bet_fraction,
                self.fixed_fraction,
                self.max_epochs,
                None if self.warm_start is None else self.warm_start.calibration_sha256,
            )
        )
        put(self, "fingerprint", hashlib.sha256(key.encode()).hexdigest()[:16])

    @staticmethod
    def _check_warm_start(
        ws: LTTResult, m: int, alphas: FloatArray, idx: IntArray, delta: float
    ) -> float:
        if not isinstance(ws, LTTResult):
            raise TypeError(f"warm_start: expected an LTTResult, got {type(ws).__name__}")
        if ws.certified.size != m:
            raise ValueError(f"warm_start: calibrated on {ws.certified.size} grid points, not {m}")
        if not np.array_equal(ws.alpha, alphas):
            raise ValueError(
                f"warm_start: alpha {ws.alpha.tolist()} differs from {alphas.tolist()}"
            )
        if ws.order is None or not np.array_equal(ws.order, idx):
            raise ValueError("warm_start: was run with another testing order")
        if not ws.delta < delta:
            raise ValueError(
                f"warm_start: its delta ({plain(ws.delta)}) is delta_batch and must be < delta "
                f"({delta!r}); the online certifier spends delta - delta_batch"
            )
        return delta - ws.delta

    # ------------------------------------------------------------------ configuration
    def epoch_delta(self, epoch: int) -> float:
        """δ_e spent by epoch ``epoch`` (0-based): Σ_e δ_e ≤ δ − δ_batch."""
        d = self._delta_online
        return d / 2.0 ** (epoch + 1) if self.max_epochs is None else d / self.max_epochs

    # ------------------------------------------------------------------ protocol
    def init(self) -> AnytimeLTTState:
        """The state before any input (epoch 0)."""
        return self._fresh(t=0, epoch=0)

    def restart(self, state: AnytimeLTTState, /) -> AnytimeLTTState:
        """Start a new epoch at this input: fresh wealth at δ_(e+1), nothing certified.

        Call it at a stopping time (e.g. a budget alarm): the following inputs then carry a new
        certificate, valid on post-restart data only. Raises ``ValueError`` after ``max_epochs``.
        """
        self._check_state(state)
        if self.max_epochs is not None and state.epoch + 1 >= self.max_epochs:
            raise ValueError(
                f"state: epoch {state.epoch} is the last of max_epochs={self.max_epochs}; "
                "use max_epochs=None (δ/2^(e+1) per epoch) or a larger max_epochs to restart"
            )
        return self._fresh(t=state.t, epoch=state.epoch + 1)

    def restore(self, text: str, /) -> AnytimeLTTState:
        """A state from :meth:`AnytimeLTTState.to_json`, refused if written by another config."""
        state = AnytimeLTTState.from_json(text)
        self._check_state(state)
        return state

    def update(
        self, state: AnytimeLTTState, x: ArrayLike, /
    ) -> tuple[AnytimeLTTState, CertificationStep]:
        """One input: x (m,) or (n_risks, m) losses in [0, bound], grid order. O(m).

        The bets used on x were fixed before x was seen (``state.next_bet``).
        """
        self._check_state(state)
        loss = self._checked(x, "x", ndim=2)
        kernel_x = 1.0 - loss.reshape(-1) / self._stream_bound
        bets = (
            state.t - state.epoch_start,
            state.next_bet.reshape(-1),
            state.sum_x.reshape(-1),
            state.sum_sq_dev.reshape(-1),
            state.ons_a.reshape(-1),
        )
        rate = self._rate
        (_, next_bet, sum_x, sum_sq, ons_a), used = bet_step(
            bets, kernel_x, rate, self._cap, self.fixed_fraction, self.strategy
        )
        shape = state.log_wealth.shape
        log_w = state.log_wealth + np.log1p(used * (kernel_x - rate)).reshape(shape)
        hit = log_w >= -math.log(self.epoch_delta(state.epoch))
        certified, index, cert_step, n_new = state.certified, state.index, state.certified_step, 0
        crossed = state.crossed
        if (hit > crossed).any():  # a new crossing (latched): the prefix may grow
            crossed = crossed | hit
            certified, index, cert_step, n_new = self._certify(state, crossed, state.t)
        new = AnytimeLTTState(
            t=state.t + 1,
            epoch=state.epoch,
            epoch_start=state.epoch_start,
            certified=certified,
            index=index,
            certified_step=cert_step,
            crossed=crossed,
            log_wealth=log_w,
            next_bet=next_bet.reshape(shape),
            sum_x=sum_x.reshape(shape),
            sum_sq_dev=sum_sq.reshape(shape),
            ons_a=ons_a.reshape(shape),
            fingerprint=self.fingerprint,
        )
        return new, self._step(new, loss, n_new > 0)

    def run(self, state: AnytimeLTTState, losses: ArrayLike, /) -> AnytimeLTTRun:
        """T inputs at once: ``losses`` (T, m) or (T, n_risks, m); same states as ``update``.

        Validated once, then processed in blocks of rows (vectorised over time for ``"agrapa"``
        and ``"fixed"`` bets) on reused float64 buffers; the state is built once, at the end.
        """
        self._check_state(state)
        block = self._checked(losses, "losses", ndim=3)
        return run_blocks(self, state, block, _BLOCK_CELLS)

    def deployable_index(self, state: AnytimeLTTState, /) -> int | None:
        """The threshold to deploy: the online ``index``, or in epoch 0 the batch warm start's
        certified index when it is more aggressive (later in the order). Both certificates hold
        at once with probability ≥ 1 − δ (δ_batch + δ_online)."""
        self._check_state(state)
        online = state.index
        if self.warm_start is None or state.epoch > 0:
            return online
        batch = self.warm_start.select_index("most_aggressive")
        if batch is None or online is None:
            return online if batch is None else batch
        return batch if self._rank[batch] > self._rank[online] else online

    # ------------------------------------------------------------------ internals
    def _fresh(self, *, t: int, epoch: int) -> AnytimeLTTState:
        r, m = self.n_risks, self.m
        _, next_bet, sum_x, sum_sq, ons_a = bet_start(
            r * m, self.strategy, self._cap, self.fixed_fraction
        )
        return AnytimeLTTState(
            t=t,
            epoch=epoch,
            epoch_start=t,
            certified=np.zeros(m, dtype=bool),
            index=None,
            certified_step=np.full(m, NO_ALARM, dtype=np.int64),
            crossed=np.zeros((r, m), dtype=bool),
            log_wealth=np.zeros((r, m)),
            next_bet=next_bet.reshape(r, m),
            sum_x=sum_x.reshape(r, m),
            sum_sq_dev=sum_sq.reshape(r, m),
            ons_a=ons_a.reshape(r, m),
            fingerprint=self.fingerprint,
        )

    def _check_state(self, state: Any) -> None:
        if not isinstance(state, AnytimeLTTState):
            raise TypeError(f"state: expected an AnytimeLTTState, got {type(state).__name__}")
        if state.fingerprint != self.fingerprint:
            raise ValueError(
                "state: was made by an AnytimeLTT with another grid size, order, alpha, delta, "
                f"bound, bet options or warm start (fingerprint {state.fingerprint!r}, this "
                f"monitor's is {self.fingerprint!r})"
            )

    def _check_losses(self, value: ArrayLike, name: str, *, ndim: int) -> FloatArray:
        """(…, n_risks, m) losses, each risk's in [0, bound]; one risk may drop its axis."""
        # ±inf fail the range checks below (NaN is refused by as_float_array)
        arr = as_float_array(value, name, ndim=(ndim - 1, ndim), finite=False)
        r, m = self.n_risks, self.m
        if arr.ndim == ndim - 1:
            if r != 1:
                raise ValueError(f"{name}: {r} risks need shape (..., {r}, {m}), got {arr.shape}")
            arr = arr.reshape(*arr.shape[:-1], 1, arr.shape[-1])
        if arr.shape[-2:] != (r, m):
            raise ValueError(f"{name}: expected (..., {r}, {m}) losses, got shape {arr.shape}")
        if arr.min() < 0.0:
            raise ValueError(f"{name}: losses must be >= 0, found {plain(arr.min())}")
        bounds = self._bounds
        top = arr.max() if r == 1 else arr.reshape(-1, r, m).max(axis=(0, 2))
        if np.any(top > bounds):
            over = arr > bounds[:, None]
            raise ValueError(
                f"{name}: losses must be <= bound {bounds.tolist()}, found {plain(arr[over].max())}"
            )
        return arr

    def _checked(self, value: ArrayLike, name: str, *, ndim: int) -> FloatArray | BoolArray:
        """:meth:`_check_losses` without a float64 copy of a valid bool or float64 array.

        (…, n_risks, m) losses; a bool array stays bool (the kernel's ``1 − L/B`` casts it,
        with the same bits). Anything else, or anything invalid, goes through
        :meth:`_check_losses`, which converts it or raises its error.
        """
        r, m = self.n_risks, self.m
        if (
            isinstance(value, np.ndarray)
            and value.dtype in (np.float64, np.bool_)
            and value.ndim in (ndim - 1, ndim)
            and value.size
            and value.shape[-1] == m
            and (value.ndim == ndim or r == 1)
        ):
            arr = value if value.ndim == ndim else value.reshape(*value.shape[:-1], 1, m)
            if arr.shape[-2] == r:
                bounds = self._bounds
                if arr.dtype == np.bool_:
                    if bounds.min() >= 1.0 or not arr.any():
                        return arr
                elif arr.min() >= 0.0:  # False for NaN
                    if r == 1:
                        if arr.max() <= bounds[0]:
                            return arr
                    elif (arr.reshape(-1, r, m).max(axis=(0, 2)) <= bounds).all():
                        return arr
        return self._check_losses(value, name, ndim=ndim)

    def _certify(
        self, state: AnytimeLTTState, crossed: BoolArray, t: int
    ) -> tuple[BoolArray, int | None, IntArray, int]:
        """Fixed sequence over the order on "every risk crossed"; the prefix only grows."""
        idx = self._idx
        ok = (crossed[0] if self.n_risks == 1 else np.all(crossed, axis=0))[idx]
        n_ok = int(np.argmin(ok))  # the first not crossed (0 also when all crossed)
        n_ok = idx.size if ok[n_ok] else n_ok
        n_old = self._n_certified(state)
        if n_ok == n_old:
            return state.certified, state.index, state.certified_step, 0
        certified = state.certified.copy()
        certified[idx[:n_ok]] = True
        cert_step = state.certified_step.copy()
        cert_step[idx[n_old:n_ok]] = t
        return certified, int(idx[n_ok - 1]), cert_step, n_ok - n_old

    def _n_certified(self, state: AnytimeLTTState) -> int:
        """Size of the certified prefix: the rank of ``index`` in the order, plus one."""
        return 0 if state.index is None else int(self._rank[state.index]) + 1

    def _step(
        self, state: AnytimeLTTState, loss: FloatArray | BoolArray, grew: bool
    ) -> CertificationStep:
        idx = self._idx
        n_cert = self._n_certified(state)
        front = int(idx[min(n_cert, idx.size - 1)])
        # the order's first threshold is certified first (certified steps grow along the order)
        first = int(state.certified_step[idx[0]]) if n_cert else None
        wealth = state.log_wealth[:, front]  # the smallest over risks
        return CertificationStep(
            t=state.t - 1,
            x=float(loss[0, front]),
            statistic=float(wealth[0] if wealth.size == 1 else wealth.min()),
            alarm=n_cert > 0,
            new_alarm=grew,
            alarm_step=first,
            index=state.index,
            n_certified=n_cert,
        )
