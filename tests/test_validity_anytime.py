"""Monte Carlo validity of the anytime-valid LTT certifier at arbitrary stopping times.

Recipe (anytime validity): over N independent null streams, the number of streams on which any
threshold whose true risk is >= alpha (its null, the boundary included) is *ever* certified must
stay <= binom.ppf(1 - 1e-4, N, delta). Certification only grows, so "ever" = "at the end".

Speed: every stream's m thresholds are independent columns of ONE AnytimeLTT over N·m columns
(its per-column wealth and crossings are exactly the per-stream ones); the per-stream fixed
sequence is then read from the latched crossings, and checked against per-stream certifiers on a
few streams. The invalid twin (batch LTT re-run at delta on all data so far, at every step) must
fail the same check.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from ctd_stats import learn_then_test
from ctd_stats.online.anytime_alarms import false_alarm_losses
from ctd_stats.online.anytime_audit import importance_weighted_losses
from ctd_stats.online.anytime_ltt import AnytimeLTT, AnytimeLTTState

pytestmark = pytest.mark.validity

ALPHA, DELTA = 0.1, 0.1
N_STREAMS, HORIZON = 1000, 1500
# True risks in testing order (most conservative first); >= ALPHA is a null (boundary included).
RATES = np.array([0.02, 0.05, 0.10, 0.20])


def _tolerance(n: int, delta: float) -> int:
    return int(stats.binom.ppf(1 - 1e-4, n, delta))


def _budget_losses(rng: np.random.Generator, rates: np.ndarray, n: int, horizon: int) -> np.ndarray:
    """(horizon, n, m) delegation indicators 1[u < rate_j], one u per input (nested in j)."""
    u = rng.uniform(size=(horizon, n, 1))
    return (u < rates).astype(np.float64)


def _certified_per_stream(state: AnytimeLTTState, n: int, m: int) -> np.ndarray:
    """(n, m): each stream's fixed-sequence prefix (order 0..m-1) of all-risks-crossed."""
    ok = state.crossed.reshape(state.crossed.shape[0], n, m).all(axis=0)
    return np.cumprod(ok, axis=1).astype(bool)


def _columns_run(losses: np.ndarray, alpha, bound=1.0, state=None, mon=None):
    """One certifier over every (stream, threshold) column; losses (T, [r,] n, m)."""
    t = losses.shape[0]
    flat = losses.reshape(t, -1) if losses.ndim == 3 else losses.reshape(t, losses.shape[1], -1)
    if mon is None:
        mon = AnytimeLTT(flat.shape[-1], alpha=alpha, delta=DELTA, order="ascending", bound=bound)
    out = mon.run(mon.init() if state is None else state, flat)
    return mon, out.state


def _false_count(certified: np.ndarray, null: np.ndarray) -> int:
    return int(np.sum((certified & null[None, :]).any(axis=1)))


def test_budget_loss_anytime_valid_and_matches_per_stream_certifiers() -> None:
    rng = np.random.default_rng(2024)
    losses = _budget_losses(rng, RATES, N_STREAMS, HORIZON)
    _, state = _columns_run(losses, ALPHA)
    cert = _certified_per_stream(state, N_STREAMS, RATES.size)
    false = _false_count(cert, RATES >= ALPHA)
    assert false <= _tolerance(N_STREAMS, DELTA), false
    assert cert[:, 0].mean() > 0.9  # the test has power: the safest thresholds are certified
    for s in range(5):  # the column trick equals the per-stream certifier
        mon = AnytimeLTT(RATES.size, alpha=ALPHA, delta=DELTA, order="ascending")
        one = mon.run(mon.init(), losses[:, s, :]).state
        assert np.array_equal(one.certified, cert[s])


def test_peeking_batch_ltt_twin_fails_the_same_check() -> None:
    """Batch LTT (binomial, fixed sequence) at delta on all data so far, at every step."""
    rng = np.random.default_rng(2024)
    n, horizon = 400, 600
    losses = _budget_losses(rng, RATES, n, horizon)
    counts = np.cumsum(losses, axis=0).astype(np.int64)  # (T, n, m)
    # Largest loss count certified at each size: learn_then_test on the counts 0..size in
    # ascending order (its p-value increases with the count, so it certifies a prefix).
    k_max = np.empty(horizon, dtype=np.int64)
    for size in range(1, horizon + 1):
        res = learn_then_test(
            counts=np.arange(size + 1), n=size, alpha=ALPHA, delta=DELTA, order="ascending"
        )
        k_max[size - 1] = int(res.certified.sum()) - 1
    ok = counts <= k_max[:, None, None]
    cert_each_step = np.cumprod(ok, axis=2).astype(bool)  # fixed sequence at every step
    for s, step in ((0, horizon - 1), (1, 200), (2, 17)):  # equals learn_then_test itself
        direct = learn_then_test(
            losses[: step + 1, s, :], alpha=ALPHA, delta=DELTA, order="ascending"
        )
        assert np.array_equal(direct.certified, cert_each_step[step, s])
    ever = np.asarray(cert_each_step.any(axis=0))
    false = _false_count(ever, RATES >= ALPHA)
    assert false > _tolerance(n, DELTA), false


def test_importance_weighted_audit_losses_anytime_valid() -> None:
    pi_min = 0.1
    rng = np.random.default_rng(7)
    n, horizon = 600, HORIZON
    labels = _budget_losses(rng, RATES, n, horizon)
    weighted = np.empty_like(labels)
    for s in range(n):
        pi = rng.uniform(pi_min, 1.0, size=horizon)  # chosen before the label is seen
        audited = rng.uniform(size=horizon) < pi
        seen = np.where(audited[:, None], labels[:, s, :], np.nan)
        weighted[:, s, :] = importance_weighted_losses(seen, audited, pi, pi_min=pi_min)
    _, state = _columns_run(weighted, ALPHA, bound=1.0 / pi_min)
    cert = _certified_per_stream(state, n, RATES.size)
    false = _false_count(cert, RATES >= ALPHA)
    assert false <= _tolerance(n, DELTA), false
    assert cert[:, 0].mean() > 0.5


def test_two_risks_intersection_union_anytime_valid() -> None:
    rng = np.random.default_rng(11)
    n = N_STREAMS
    rates_a = RATES
    rates_b = np.array([0.01, 0.10, 0.05, 0.05])  # the second risk's first null comes earlier
    u = rng.uniform(size=(HORIZON, 2, n, 1))
    losses = (u < np.stack([rates_a, rates_b])[None, :, None, :]).astype(np.float64)
    _, state = _columns_run(losses, [ALPHA, ALPHA])
    cert = _certified_per_stream(state, n, RATES.size)
    null = (rates_a >= ALPHA) | (rates_b >= ALPHA)
    false = _false_count(cert, null)
    assert false <= _tolerance(n, DELTA), false
    # The invalid twin: certify on risk a alone (drop the intersection–union) fails.
    only_a = np.cumprod(state.crossed[0].reshape(n, -1), axis=1).astype(bool)
    assert _false_count(only_a, null) > _tolerance(n, DELTA)


def test_restart_spends_delta_over_epochs() -> None:
    """Epoch 0 on rates R0, a restart (a stopping time), epoch 1 after a drift to R1."""
    rng = np.random.default_rng(5)
    n = N_STREAMS
    r0 = np.array([0.02, 0.05, 0.06, 0.20])
    r1 = np.array([0.02, 0.10, 0.15, 0.30])
    m = n * r0.size
    mon = AnytimeLTT(m, alpha=ALPHA, delta=DELTA, order="ascending", max_epochs=None)
    first = mon.run(mon.init(), _budget_losses(rng, r0, n, HORIZON).reshape(HORIZON, m)).state
    second = mon.run(mon.restart(first), _budget_losses(rng, r1, n, HORIZON).reshape(HORIZON, m))
    cert0 = _certified_per_stream(first, n, r0.size)
    cert1 = _certified_per_stream(second.state, n, r1.size)
    false = (cert0 & (r0 >= ALPHA)).any(axis=1) | (cert1 & (r1 >= ALPHA)).any(axis=1)
    assert int(false.sum()) <= _tolerance(n, DELTA), int(false.sum())
    assert cert0[:, 2].mean() > 0.5  # epoch 0 certifies the 0.06 threshold (rate 0.15 later)
    # Invalid twin: keep epoch 0's certificate after the drift (no restart).
    kept = (cert0 & (r1 >= ALPHA)).any(axis=1)
    assert int(kept.sum()) > _tolerance(n, DELTA)


def test_late_outcomes_valid_in_value_blind_order_and_twin_fails() -> None:
    """False-alarm indicators of correct trajectories (minima uniform: rate λ at λ) entering in
    a random arrival order stay valid; an arrival order that depends on the indicator (the
    trajectories that did not alarm are reviewed first) certifies null thresholds."""
    rng = np.random.default_rng(13)
    n, horizon = 600, 600
    grid = np.array([0.02, 0.05, 0.1, 0.2, 0.3])  # false-alarm rate = λ; null: λ >= ALPHA
    minima = rng.uniform(size=(n, horizon))
    blind = np.take_along_axis(minima, rng.permuted(np.tile(np.arange(horizon), (n, 1)), axis=1), 1)
    biased = np.sort(minima, axis=1)[:, ::-1]  # largest minima (no alarm) arrive first
    for arrival, valid in ((blind, True), (biased, False)):
        losses = false_alarm_losses(arrival.reshape(-1), grid).reshape(n, horizon, -1)
        _, state = _columns_run(np.swapaxes(losses, 0, 1), ALPHA)
        cert = _certified_per_stream(state, n, grid.size)
        false = _false_count(cert, grid >= ALPHA)
        if valid:
            assert false <= _tolerance(n, DELTA), false
            assert cert[:, 1].mean() > 0.5  # power: λ = 0.05 is certified
        else:
            assert false > _tolerance(n, DELTA), false
