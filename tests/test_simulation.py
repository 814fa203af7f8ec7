"""Tests of ctd_stats.cascade.simulation: the simulator does what its parameters say."""

from __future__ import annotations

import numpy as np
import pytest

from ctd_stats.cascade.simulation import SimulationParameters, simulate_cascade


def _within(observed: float, expected: float, n: int) -> bool:
    return abs(observed - expected) <= 5 * np.sqrt(expected * (1 - expected) / n)


@pytest.mark.parametrize(
    "params", [SimulationParameters.strong_expert(), SimulationParameters.weak_expert()]
)
def test_group_accuracies_match_parameters(params: SimulationParameters) -> None:
    n = 200_000
    t = simulate_cascade(n, params=params, seed=1)
    for g, name in enumerate(params.group_names):
        rows = t.groups == name
        k = int(rows.sum())
        assert _within(k / n, params.group_weights[g], n)
        acc_p = np.mean((t.probe[rows] >= 0.5) == (t.labels[rows] == 1))
        acc_e = np.mean((t.expert[rows] >= 0.5) == (t.labels[rows] == 1))
        assert _within(acc_p, params.probe_accuracy[g], k)
        assert _within(acc_e, params.expert_accuracy[g], k)
    assert _within(float(t.labels.mean()), params.positive_rate, n)


def test_regimes_as_in_the_spec() -> None:
    strong, weak = SimulationParameters.strong_expert(), SimulationParameters.weak_expert()
    assert strong.expected_probe_accuracy == pytest.approx(0.70)
    assert strong.expected_expert_accuracy == pytest.approx(0.84, abs=0.01)
    assert weak.expected_expert_accuracy < weak.expected_probe_accuracy
    # groups differ in expert benefit: mean v ordering follows expert − probe accuracy gaps
    t = simulate_cascade(100_000, params=strong, seed=2)
    v = t.values()
    means = [v[t.groups == g].mean() for g in strong.group_names]
    gaps = np.subtract(strong.expert_accuracy, strong.probe_accuracy)
    assert list(np.argsort(means)) == list(np.argsort(gaps))


def test_dv_score_tracks_value_and_offset_shifts_it() -> None:
    t = simulate_cascade(50_000, seed=3)
    v = t.values()
    assert np.corrcoef(t.dv, v)[0, 1] > 0.2
    resid = t.dv - v
    assert resid.std() == pytest.approx(SimulationParameters().dv_noise, rel=0.05)
    shifted = simulate_cascade(50_000, seed=3, dv_offset=0.5)
    assert np.allclose(shifted.dv - t.dv, 0.5)


def test_reproducible_and_weights_override() -> None:
    a = simulate_cascade(500, seed=9)
    b = simulate_cascade(500, seed=np.random.default_rng(9))
    assert np.array_equal(a.dv, b.dv) and np.array_equal(a.groups, b.groups)
    only_a = simulate_cascade(300, seed=1, group_weights=[1.0, 0.0, 0.0, 0.0])
    assert set(only_a.groups.tolist()) == {"sim_a"}


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="probe_accuracy"):
        SimulationParameters(probe_accuracy=(0.4, 0.7, 0.7, 0.7))
    with pytest.raises(ValueError, match="group_weights"):
        SimulationParameters(group_weights=(0.5, 0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="expert_accuracy"):
        SimulationParameters(expert_accuracy=(0.9, 0.9))
    with pytest.raises(ValueError, match="group_names"):
        SimulationParameters(group_names=("a", "a", "b", "c"))
    with pytest.raises(ValueError, match="expert_noise"):
        SimulationParameters(expert_noise=0.0)
    with pytest.raises(ValueError, match="group_weights"):
        simulate_cascade(10, group_weights=[0.5, 0.5])
    with pytest.raises(ValueError, match="n"):
        simulate_cascade(0)
    with pytest.raises(ValueError, match="dv_offset"):
        simulate_cascade(10, dv_offset=float("inf"))


def test_simulation_junk_is_refused_with_the_argument_name() -> None:
    with pytest.raises(TypeError, match=r"^group_names: expected a sequence of str"):
        SimulationParameters(group_names=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^group_names: every name must be a str"):
        SimulationParameters(group_names=([1], "b", "c", "d"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^probe_accuracy: expected a sequence of numbers"):
        SimulationParameters(probe_accuracy=0.7)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^expert_noise: expected a number"):
        SimulationParameters(expert_noise="5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^dv_noise: must be finite"):
        SimulationParameters(dv_noise=float("inf"))
    with pytest.raises(TypeError, match=r"^seed: expected an integer or a numpy Generator"):
        simulate_cascade(73, seed=5.0e16)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^seed: must be >= 0"):
        simulate_cascade(73, seed=-1)
    with pytest.raises(TypeError, match=r"^dv_offset: expected a number"):
        simulate_cascade(73, dv_offset=None)  # type: ignore[arg-type]
