"""probes.pipeline: artifact → CascadeTable, the safety probe fitted at most once."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")

import probes.pipeline as pipeline
from ctd_stats import delegation_value
from probes.linear import fit_logistic, fit_ridge


def _toy_artifact(seed: int = 0) -> dict[str, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    n, d = 240, 6
    x = rng.normal(size=(n, d)).astype(np.float16)
    y = (x[:, 0].astype(np.float64) + 0.5 * rng.normal(size=n) > 0).astype(np.int8)
    split = np.array(["train"] * 80 + ["dev"] * 80 + ["test"] * 80)
    expert = np.clip(0.5 + 0.4 * (2 * y - 1) + 0.2 * rng.normal(size=n), 0, 1)
    return {
        "activations": x,
        "label": y,
        "split": split,
        "group": np.array(["a", "b"] * (n // 2)),
        "expert_toy": expert.astype(np.float32),
    }


def test_matches_the_paper_recipe_by_hand() -> None:
    art = _toy_artifact()
    out = pipeline.artifact_cascade(art, expert="toy")
    x, y = art["activations"].astype(np.float64), art["label"].astype(np.int64)
    tr, dv, te = (art["split"] == s for s in ("train", "dev", "test"))
    p = fit_logistic(x[tr], y[tr], C=1.0).predict_proba(x)
    e = art["expert_toy"].astype(np.float64)
    v = delegation_value(y[dv], p[dv], e[dv])
    d = fit_ridge(x[dv], v, penalty=1.0).predict(x)
    assert np.array_equal(out.table.probe, p[te])
    assert np.array_equal(out.table.dv, d[te])
    assert np.array_equal(out.table.labels, y[te])
    assert np.array_equal(out.dev_values, v)


def test_stored_probe_scores_are_used_and_the_probe_is_fitted_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    art = _toy_artifact(1)
    calls = {"n": 0}
    real = pipeline.fit_logistic

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "fit_logistic", counting)
    first = pipeline.artifact_cascade(art, expert="toy")
    pipeline.artifact_cascade(art, expert="toy", kind="binary")
    assert calls["n"] == 1  # one fit per artifact, whatever the expert or DV kind

    stored = dict(art, probe=np.linspace(0.01, 0.99, art["label"].size))
    out = pipeline.artifact_cascade(stored, expert="toy")
    assert calls["n"] == 1  # the artifact's own probe scores: no refit
    test = stored["split"] == "test"
    assert np.array_equal(out.table.probe, stored["probe"][test])
    assert not np.array_equal(out.table.probe, first.table.probe)


def test_errors_name_the_argument() -> None:
    art = _toy_artifact()
    with pytest.raises(ValueError, match=r"^expert: .*'toy'"):
        pipeline.artifact_cascade(art, expert="nope")
    broken = {k: v for k, v in art.items() if k != "split"}
    with pytest.raises(ValueError, match=r"^artifact: "):
        pipeline.artifact_cascade(broken, expert="toy")
