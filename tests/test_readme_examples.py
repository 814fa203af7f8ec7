"""The README's Python examples run as written and print the values the README shows.

Each block runs in a temporary folder (they write JSON files). The test then checks what the block
printed twice: against the ``# prints:`` lines written in the README block itself (each must be a
line the block printed, in order), and against numbers recomputed here by an independent route
(scipy's binomial CDF, plain numpy comparisons) — a change in either means the example, the
README, or the statistics behind them changed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def shown(index: int) -> list[str]:
    """The output the README shows for a block: its ``# prints:`` comment lines."""
    return re.findall(r"^# prints: (.*)$", BLOCKS[index], re.M)


def _check_shown(index: int, out: list[str]) -> None:
    """Every line the README says is printed was printed, in the README's order."""
    lines = iter(out)
    for expected in shown(index):
        assert any(line == expected for line in lines), (expected, out)


def _run(index: int, capsys: pytest.CaptureFixture[str]) -> tuple[list[str], dict[str, Any]]:
    namespace: dict[str, Any] = {}
    exec(compile(BLOCKS[index], f"README.md[python block {index}]", "exec"), namespace)
    return capsys.readouterr().out.splitlines(), namespace


def _check_learn_then_test(out: list[str], ns: dict[str, Any]) -> None:
    """Block 0: LTT on delegation indicators, fixed-sequence from the highest threshold down."""
    assert len(out) == 1
    match = re.fullmatch(r"τ = (\d\.\d\d), certified (\d+) of 101 thresholds", out[0])
    assert match, out[0]
    tau, n_certified = float(match.group(1)), int(match.group(2))
    # Independent: exact binomial p-values P(Bin(n, α) <= k_j) for H0: rate > α, tested in order
    # from the most conservative threshold down, stopping at the first p-value above δ.
    scores, grid = ns["dv_scores"], ns["grid"]
    counts = (scores[:, None] > grid[None, :]).sum(axis=0)
    pvals = stats.binom.cdf(counts, scores.size, 0.2)
    certified = []
    for j in range(grid.size - 1, -1, -1):
        if pvals[j] > 0.1:
            break
        certified.append(j)
    assert n_certified == len(certified) == int(ns["res"].certified.sum())
    assert tau == round(float(grid[min(certified)]), 2)
    assert shown(0) == [out[0]]  # what the README shows


def _check_delegator(out: list[str], ns: dict[str, Any]) -> None:
    """Block 1: calibrate, reload from JSON, stream with the monitor, checkpoint, resume."""
    calibration, trace = ns["calibration"], ns["trace"]
    printed = "\n".join(out)
    assert printed.startswith(repr(calibration))  # the reloaded calibration prints the same
    assert calibration.found and calibration.alpha == 0.2 and calibration.delta == 0.1
    _check_shown(1, out)  # the README's headline and last line
    assert shown(1)[0] == out[0] == repr(calibration).splitlines()[0]
    assert f"threshold={calibration.threshold:.6g}" in out[0]  # the headline shows the threshold
    assert not any(line.startswith("recalibrate") for line in out)  # no alarm on 1,000 inputs
    # Independent: the delegator sends an input iff its DV score is above the threshold.
    from ctd_stats import simulate_cascade

    stream = simulate_cascade(100_000, seed=3).dv
    rate = float(np.mean(stream > calibration.threshold))
    assert np.array_equal(trace.delegated, stream > calibration.threshold)
    assert rate <= 0.2  # the certified budget holds on this exchangeable stream
    assert out[-1] == f"{rate:.3f} delegated; alarm at None" == shown(1)[-1]


CHECKS: dict[int, Callable[[list[str], dict[str, Any]], None]] = {
    0: _check_learn_then_test,
    1: _check_delegator,
}


def test_every_readme_example_has_a_check() -> None:
    assert len(BLOCKS) == len(CHECKS), "a README example was added or removed: update CHECKS"
    for index in CHECKS:
        assert shown(index), f"README python block {index}: say what it prints (# prints: ...)"


@pytest.mark.parametrize("index", sorted(CHECKS))
def test_readme_example_prints_the_right_values(
    index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    out, namespace = _run(index, capsys)
    CHECKS[index](out, namespace)


def test_the_checks_catch_a_wrong_number(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Negative control: the same checks reject an output with one number changed."""
    monkeypatch.chdir(tmp_path)
    out, namespace = _run(0, capsys)
    with pytest.raises(AssertionError):
        _check_learn_then_test([out[0].replace("certified 19", "certified 20")], namespace)
    out, namespace = _run(1, capsys)
    with pytest.raises(AssertionError):
        _check_delegator([*out[:-1], out[-1].replace("0.197", "0.198")], namespace)
