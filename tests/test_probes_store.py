"""The sharded activation store: resume after an interruption, tamper and mismatch detection."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from _probes_fixtures import TEXTS, tiny_model, tiny_tokenizer

from probes.extract import extract_to_store
from probes.store import ActivationStore, StoreMeta

KW = {
    "layers": [1, 2],
    "model_name": "tiny-llama",
    "model_hash": "abc",
    "shard_size": 2,
    "batch_size": 3,
    "progress": False,
}


@pytest.fixture(scope="module")
def setup():  # type: ignore[no-untyped-def]
    tok = tiny_tokenizer()
    return tiny_model("llama", len(tok)), tok


def test_kill_and_resume_equals_uninterrupted(setup, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    model, tok = setup
    full, _ = extract_to_store(model, tok, TEXTS, tmp_path / "a", **KW)
    assert full.shape == (len(TEXTS), 2, 32)

    calls = {"n": 0}
    original = ActivationStore.write_shard

    def dying_write(self, start, block):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # interrupted while writing the third shard
        return original(self, start, block)

    monkeypatch.setattr(ActivationStore, "write_shard", dying_write)
    with pytest.raises(KeyboardInterrupt):
        extract_to_store(model, tok, TEXTS, tmp_path / "b", **KW)
    monkeypatch.setattr(ActivationStore, "write_shard", original)
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["shards"] == []  # not finalised: the commit records are the truth
    assert len(list((tmp_path / "b").glob("shard-*.json"))) == 2
    (tmp_path / "b" / ".tmp-leftover").write_bytes(b"half a shard")  # a torn temporary write

    seen: list[int] = []

    def counting_write(self, start, block):  # type: ignore[no-untyped-def]
        seen.append(len(block))
        return original(self, start, block)

    monkeypatch.setattr(ActivationStore, "write_shard", counting_write)
    resumed, _ = extract_to_store(model, tok, TEXTS, tmp_path / "b", **KW)
    assert sum(seen) == len(TEXTS) - 4  # only the missing rows were computed
    np.testing.assert_array_equal(resumed, full)


def test_tampered_shard_is_detected(setup, tmp_path):  # type: ignore[no-untyped-def]
    model, tok = setup
    extract_to_store(model, tok, TEXTS, tmp_path, **KW)
    shard = tmp_path / "shard-0000000002-0000000004.npy"
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="tampered"):
        extract_to_store(model, tok, TEXTS, tmp_path, **KW)


def test_mismatched_store_is_refused(setup, tmp_path):  # type: ignore[no-untyped-def]
    model, tok = setup
    extract_to_store(model, tok, TEXTS, tmp_path, **KW)
    with pytest.raises(ValueError, match="different activations"):
        extract_to_store(model, tok, TEXTS, tmp_path, **{**KW, "layers": [1, 3]})
    with pytest.raises(ValueError, match="dataset_hash"):
        extract_to_store(model, tok, [*TEXTS[:-1], "the doctor"], tmp_path, **KW)
    with pytest.raises(ValueError, match="max_tokens"):
        extract_to_store(model, tok, TEXTS, tmp_path, max_tokens=3, **KW)


def test_corrupt_manifest_and_bad_blocks(tmp_path):  # type: ignore[no-untyped-def]
    meta = StoreMeta(
        model="m",
        model_hash="h",
        layers=(0,),
        pooling="mean",
        dtype="float16",
        max_tokens=None,
        dataset_hash="d",
        n_examples=3,
        hidden_size=4,
    )
    store = ActivationStore(tmp_path, meta)
    with pytest.raises(ValueError, match="block"):
        store.append(np.zeros((2, 1, 5)))
    with pytest.raises(ValueError, match="NaN"):
        store.append(np.full((1, 1, 4), np.nan))
    with pytest.raises(ValueError, match="exceed"):
        store.append(np.zeros((4, 1, 4)))
    store.append(np.ones((3, 1, 4)))
    assert store.complete
    assert store.load().dtype == np.float16
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="unreadable manifest"):
        ActivationStore(tmp_path, meta)
    with pytest.raises(ValueError, match="dtype"):
        StoreMeta(
            model="m",
            model_hash="h",
            layers=(0,),
            pooling="mean",
            dtype="int8",
            max_tokens=None,
            dataset_hash="d",
            n_examples=3,
            hidden_size=4,
        )
