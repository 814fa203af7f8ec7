"""The committed book artifact: consistent arrays, provenance manifest, hash check."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from probes.artifact import load_artifact

ART = Path(__file__).resolve().parents[1] / "book" / "artifacts" / "stakes_smollm2.npz"
MAN = ART.with_name("stakes_smollm2.manifest.json")
pytestmark = pytest.mark.skipif(not ART.is_file(), reason=f"{ART} not built yet")


def test_artifact_arrays_match_manifest():
    art = load_artifact(ART)
    man = json.loads(MAN.read_text())
    n = man["n_examples"]
    assert art["activations"].shape == (n, man["monitored_model"]["hidden_size"])
    assert art["activations"].dtype == np.float16
    assert np.isfinite(art["activations"]).all()
    for key in ("ids", "group", "split", "label"):
        assert art[key].shape == (n,)
    assert set(np.unique(art["split"])) == {"train", "dev", "test"}
    assert set(np.unique(art["label"])) == {0, 1}
    counts = {
        f"{s}/{g}": int(((art["split"] == s) & (art["group"] == g)).sum())
        for s, g in {(s, g) for s, g in zip(art["split"], art["group"], strict=True)}
    }
    assert counts == man["counts"]
    train = art["split"] == "train"
    for key in man["experts"]:
        e = art[f"expert_{key}"]
        assert np.isnan(e[train]).all()
        assert ((e[~train] >= 0) & (e[~train] <= 1)).all()
    best = max(man["layer_selection"]["per_layer"], key=lambda r: r["dev_auroc"])
    assert (best["layer"], best["pooling"], best["context"]) == (
        man["layer"],
        man["pooling"],
        man["context"],
    )


def test_manifest_states_the_probe_and_the_experts():
    art = load_artifact(ART)
    man = json.loads(MAN.read_text())
    assert man["token_limit"] >= 512 and man["context"] <= man["token_limit"]
    test = art["split"] == "test"
    y = art["label"][test]
    for name, block in [("probe", man["probe"]), *man["experts"].items()]:
        scores = art[name if name == "probe" else f"expert_{name}"][test].astype(np.float64)
        assert block["test"]["accuracy"] == pytest.approx(np.mean((scores >= 0.5) == (y == 1)))
        assert 0.5 < block["test"]["auroc"] <= 1
    for block in man["experts"].values():
        assert block["simulated"] is False
        assert block["kind"] in ("likelihood_continuation", "embedding_classifier")
        assert block["tokens_per_second"] > 0
        assert block["training_data"]
    # The strong expert is really stronger than the probe (the regime of CTD paper Fig. 3).
    strong = man["experts"]["minilm"]["test"]["accuracy"]
    assert strong >= man["probe"]["test"]["accuracy"] + 0.10


def test_tampered_artifact_is_refused(tmp_path):
    shutil.copy(MAN, tmp_path / MAN.name)
    data = bytearray(ART.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / ART.name).write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        load_artifact(tmp_path / ART.name)
