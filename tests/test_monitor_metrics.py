"""Monitor metrics (false-alarm rate, power, token-weighted delay) and the experiment driver."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from _monitor_sim import simulate_trajectories
from hypothesis import given, settings
from hypothesis import strategies as st

from ctd_stats._validation import FloatArray, IntArray
from ctd_stats.online.alarm_calibration import crc_thresholds
from ctd_stats.online.monitor_metrics import (
    aggregate,
    compute_monitor_metrics,
    crc_method,
    default_methods,
    run_monitor_experiment,
    split_by_trajectory,
    ucb_method,
)
from ctd_stats.online.monitors import NO_ALARM, first_alarm_steps
from ctd_stats.online.trajectories import Trajectories, load_verifier_scores

DATA_DIR = os.environ.get("CTD_STATS_DATA_DIR")
needs_data = pytest.mark.skipif(
    DATA_DIR is None, reason="CTD_STATS_DATA_DIR is not set (folder holding verifier_scores/)"
)


def _example() -> Trajectories:
    # two correct, three incorrect trajectories with token counts
    return Trajectories.from_arrays(
        [[0.9, 0.8], [0.7, 0.2, 0.9], [0.6, 0.1, 0.5, 0.5], [0.3, 0.9], [0.8, 0.8]],
        [1, 1, 0, 0, 0],
        tokens=[[1, 1], [2, 2, 2], [1, 3, 4, 2], [5, 5], [1, 1]],
    )


def test_metrics_by_hand() -> None:
    tr = _example()
    first = first_alarm_steps(tr, 0.4)  # [-1, 1, 1, 0, -1]
    np.testing.assert_array_equal(first, [NO_ALARM, 1, 1, 0, NO_ALARM])
    m = compute_monitor_metrics(tr, first)
    assert m.n_correct == 2 and m.n_incorrect == 3
    assert m.n_false_alarms == 1 and m.false_alarm_rate == 0.5
    assert m.n_detections == 2 and math.isclose(m.power, 2 / 3)
    # delays: trajectory 2 -> (1 + 3)/10, trajectory 3 -> 5/10
    assert math.isclose(m.detection_delay, (0.4 + 0.5) / 2)


def test_nothing_detected_gives_delay_one() -> None:
    tr = _example()
    m = compute_monitor_metrics(tr, np.full(5, NO_ALARM))
    assert m.power == 0.0 and m.detection_delay == 1.0 and m.false_alarm_rate == 0.0


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.lists(st.floats(0, 1), min_size=1, max_size=6), min_size=2, max_size=10),
    st.floats(0, 1),
)
def test_unit_weights_give_step_fraction(parts: list[list[float]], lam: float) -> None:
    labels = [0] * len(parts)
    tr = Trajectories.from_arrays(parts, labels)
    first = first_alarm_steps(tr, lam)
    m = compute_monitor_metrics(tr, first)
    det = first != NO_ALARM
    expected = np.mean((first[det] + 1) / tr.lengths[det]) if det.any() else 1.0
    assert math.isclose(m.detection_delay, expected, rel_tol=1e-12)
    assert math.isnan(m.false_alarm_rate) and m.n_correct == 0


def test_split_reproduces_reference_choice_of_ids() -> None:
    ids = np.array([f"p{i}" for i in range(37)])
    for seed in range(5):
        split = split_by_trajectory(37, calibration_fraction=0.2, seed=seed)
        cal, test = split.calibration, split.test
        ref = np.random.default_rng(seed).choice(ids, size=int(0.2 * 37), replace=False)
        assert set(ids[cal]) == set(ref)
        assert len(np.intersect1d(cal, test)) == 0 and len(cal) + len(test) == 37


def test_driver_matches_manual_computation() -> None:
    tr = simulate_trajectories(np.random.default_rng(0), 300)
    eps = np.array([0.1, 0.3])
    res = run_monitor_experiment(tr, alpha=eps, methods={"crc": crc_method()}, n_splits=3, seed=5)
    assert res.false_alarm_rate.shape == (1, 3, 2)
    for s in range(3):
        split = split_by_trajectory(300, calibration_fraction=0.2, seed=5 + s)
        cal, test = tr.subset(split.calibration), tr.subset(split.test)
        lam = crc_thresholds(cal, alpha=eps)
        for j in range(2):
            m = compute_monitor_metrics(test, first_alarm_steps(test, float(lam[j])))
            assert res.false_alarm_rate[0, s, j] == m.false_alarm_rate
            assert res.power[0, s, j] == m.power
            assert math.isclose(res.detection_delay[0, s, j], m.detection_delay, rel_tol=1e-12)
            assert res.n_detections[0, s, j] == m.n_detections
    summ = aggregate(res)
    np.testing.assert_allclose(summ.power.mean[0], res.power[0].mean(axis=0))
    np.testing.assert_allclose(summ.power.q90[0], np.quantile(res.power[0], 0.9, axis=0))
    assert np.all(summ.power.q10 <= summ.power.q90)


def test_custom_method_and_bad_input() -> None:
    tr = simulate_trajectories(np.random.default_rng(1), 200)

    def never(cal: Trajectories, test: Trajectories, alpha: FloatArray) -> IntArray:
        return np.full((test.n_trajectories, len(alpha)), NO_ALARM, dtype=np.int64)

    res = run_monitor_experiment(tr, alpha=[0.2], methods={"never": never}, n_splits=2)
    assert np.all(res.power == 0) and np.all(res.detection_delay == 1.0)

    def wrong(cal: Trajectories, test: Trajectories, alpha: FloatArray) -> IntArray:
        return np.zeros(test.n_trajectories, dtype=np.int64)

    with pytest.raises(ValueError, match="methods"):
        run_monitor_experiment(tr, alpha=[0.2], methods={"wrong": wrong}, n_splits=1)
    with pytest.raises(ValueError, match=r"^alpha:"):
        run_monitor_experiment(tr, alpha=[0.2, 1.0], methods={"never": never})
    with pytest.raises(ValueError, match="calibration_fraction"):
        run_monitor_experiment(tr, alpha=[0.2], methods={"never": never}, calibration_fraction=1.0)
    with pytest.raises(ValueError, match="labels are required"):
        run_monitor_experiment(Trajectories.from_arrays([[0.1], [0.2]]), alpha=[0.2])
    with pytest.raises(ValueError, match="first_alarms"):
        compute_monitor_metrics(_example(), [0, 0, 0, 0, 5])
    with pytest.raises(ValueError, match="first_alarms"):
        compute_monitor_metrics(_example(), [0, 0])
    with pytest.raises(ValueError, match="name"):
        res.method("crc")


def test_junk_is_refused_with_the_argument_name() -> None:
    tr = _example()
    with pytest.raises(TypeError, match=r"^trajectories: expected a Trajectories, got NoneType"):
        compute_monitor_metrics(None, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^first_alarms: cannot be read as an array"):
        compute_monitor_metrics(tr, [[0, 1, 1], [1, 1], [1]])
    with pytest.raises(TypeError, match=r"^trajectories: expected a Trajectories, got bool"):
        run_monitor_experiment(True, alpha=[0.2])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^methods: expected a mapping"):
        run_monitor_experiment(tr, alpha=[0.2], methods=[[0, 1]])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^seed: expected an integer"):
        run_monitor_experiment(tr, alpha=[0.2], seed=0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^seed: must lie in"):
        run_monitor_experiment(tr, alpha=[0.2], seed=-1)

    def floats(cal: Trajectories, test: Trajectories, alpha: FloatArray) -> FloatArray:
        return np.zeros((test.n_trajectories, len(alpha)))

    with pytest.raises(ValueError, match=r"^methods: 'floats': expected integer steps"):
        run_monitor_experiment(tr, alpha=[0.2], methods={"floats": floats}, n_splits=1)  # type: ignore[dict-item]
    with pytest.raises(TypeError, match=r"^trajectories: expected a Trajectories, got NoneType"):
        first_alarm_steps(None, 0.5)  # type: ignore[arg-type]
    for junk in ("", None, False):
        with pytest.raises(TypeError, match=r"^threshold: expected a number"):
            first_alarm_steps(tr, junk)  # type: ignore[arg-type]


@pytest.mark.validity
def test_protocol_on_simulated_data_controls_false_alarms() -> None:
    tr = simulate_trajectories(np.random.default_rng(2), 3000)
    eps = np.array([0.1, 0.3])
    res = run_monitor_experiment(
        tr, alpha=eps, methods={"crc": crc_method(), "ucb": ucb_method()}, n_splits=20
    )
    crc, ucb = res.false_alarm_rate[0], res.false_alarm_rate[1]
    assert np.all(crc.mean(axis=0) <= eps + 4 * crc.std(axis=0, ddof=1) / math.sqrt(20))
    assert np.all(ucb.mean(axis=0) <= eps)


@needs_data
def test_math_ten_split_protocol_controls_false_alarms() -> None:
    """CRC / UCB on verifier_scores/math, 10 splits, 20 % calibration, seeds 0..9 (SPEC §7).

    UCB (high probability) keeps the mean false-alarm rate ≤ ε outright. CRC's guarantee is in
    expectation (E[R_I] ≤ k/(n+1) ≤ ε), so its 10-split mean may exceed ε by Monte-Carlo noise;
    it must stay within 4 standard errors.
    """
    tr = load_verifier_scores("math")
    eps = np.array([0.05, 0.1, 0.2, 0.3, 0.4, 0.5])
    methods = default_methods()
    res = run_monitor_experiment(tr, alpha=eps, methods={k: methods[k] for k in ("crc", "ucb")})
    crc = res.false_alarm_rate[res.method("crc")]
    ucb = res.false_alarm_rate[res.method("ucb")]
    assert np.all(ucb.mean(axis=0) <= eps)
    assert np.all(crc.mean(axis=0) <= eps + 4 * crc.std(axis=0, ddof=1) / math.sqrt(10))
    # more tolerance = more power (monotone in ε on average)
    for name in ("crc", "ucb"):
        assert np.all(np.diff(res.power[res.method(name)].mean(axis=0)) > 0)


@needs_data
def test_math_missed_detection_control() -> None:
    """Missed-detection calibration (paper App. B) on the same 10-split protocol, ε up to 0.9."""
    tr = load_verifier_scores("math")
    eps = np.array([0.05, 0.1, 0.3, 0.5, 0.7, 0.9])
    res = run_monitor_experiment(
        tr,
        alpha=eps,
        methods={
            "crc": crc_method(risk="missed_detection"),
            "ucb": ucb_method(risk="missed_detection"),
        },
    )
    miss_crc = 1 - res.power[res.method("crc")]
    miss_ucb = 1 - res.power[res.method("ucb")]
    assert np.all(miss_ucb.mean(axis=0) <= eps)
    assert np.all(miss_crc.mean(axis=0) <= eps + 4 * miss_crc.std(axis=0, ddof=1) / math.sqrt(10))


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.lists(st.floats(0, 1), min_size=1, max_size=6), min_size=2, max_size=12),
    st.floats(0, 1),
    st.integers(0, 2**31),
)
def test_metrics_invariant_to_trajectory_order(
    parts: list[list[float]], lam: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=len(parts))
    tokens = [rng.integers(1, 5, size=len(p)) for p in parts]
    tr = Trajectories.from_arrays(parts, labels, tokens=tokens)
    perm = rng.permutation(len(parts))
    a = compute_monitor_metrics(tr, first_alarm_steps(tr, lam))
    shuffled = tr.subset(perm)
    b = compute_monitor_metrics(shuffled, first_alarm_steps(shuffled, lam))
    assert (a.n_false_alarms, a.n_detections) == (b.n_false_alarms, b.n_detections)
    for x, y in ((a.false_alarm_rate, b.false_alarm_rate), (a.power, b.power)):
        assert (math.isnan(x) and math.isnan(y)) or x == y
    assert math.isclose(a.detection_delay, b.detection_delay, rel_tol=1e-12)


def test_result_reprs_are_compact() -> None:
    tr = simulate_trajectories(np.random.default_rng(2), 200)
    res = run_monitor_experiment(tr, alpha=[0.1, 0.2], methods={"crc": crc_method()}, n_splits=2)
    assert res.alpha.tolist() == [0.1, 0.2]
    summ = aggregate(res)
    assert summ.alpha.tolist() == [0.1, 0.2]
    for obj in (res, summ, summ.power, compute_monitor_metrics(tr, first_alarm_steps(tr, 0.3))):
        assert len(repr(obj).splitlines()) <= 12
