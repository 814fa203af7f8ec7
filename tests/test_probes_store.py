"""The sharded activation store: resume after an interruption, tamper and mismatch detection."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from _probes_fixtures import TEXTS, tiny_model, tiny_tokenizer

from probes.extract import ExtractionConfig, extract_sharded, extract_to_store
from probes.store import ActivationStore, StoreMeta

CFG = ExtractionConfig(
    layers=(1, 2),
    model_name="tiny-llama",
    model_hash="abc",
    shard_size=2,
    batch_size=3,
    progress=False,
)


@pytest.fixture(scope="module")
def setup():
    tok = tiny_tokenizer()
    return tiny_model("llama", len(tok)), tok


def test_kill_and_resume_equals_uninterrupted(setup, tmp_path, monkeypatch):
    model, tok = setup
    full, _ = extract_to_store(model, tok, TEXTS, tmp_path / "a", CFG)
    assert full.shape == (len(TEXTS), 2, 32)

    calls = {"n": 0}
    original = ActivationStore.write_shard

    def dying_write(self, start, block):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # interrupted while writing the third shard
        return original(self, start, block)

    monkeypatch.setattr(ActivationStore, "write_shard", dying_write)
    with pytest.raises(KeyboardInterrupt):
        extract_to_store(model, tok, TEXTS, tmp_path / "b", CFG)
    monkeypatch.setattr(ActivationStore, "write_shard", original)
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["shards"] == []  # not finalised: the commit records are the truth
    assert len(list((tmp_path / "b").glob("shard-*.json"))) == 2
    (tmp_path / "b" / ".tmp-leftover").write_bytes(b"half a shard")  # a torn temporary write

    seen: list[int] = []

    def counting_write(self, start, block):
        seen.append(len(block))
        return original(self, start, block)

    monkeypatch.setattr(ActivationStore, "write_shard", counting_write)
    resumed, _ = extract_to_store(model, tok, TEXTS, tmp_path / "b", CFG)
    assert sum(seen) == len(TEXTS) - 4  # only the missing rows were computed
    np.testing.assert_array_equal(resumed, full)


def test_tampered_shard_is_detected(setup, tmp_path):
    model, tok = setup
    extract_to_store(model, tok, TEXTS, tmp_path, CFG)
    shard = tmp_path / "shard-0000000002-0000000004.npy"
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="tampered"):
        ActivationStore(
            tmp_path, extract_sharded(model, tok, TEXTS, tmp_path, CFG, verify=False).meta
        ).load()


def _corrupt(shard: Path, how: str) -> None:
    data = shard.read_bytes()
    shard.write_bytes(
        data[:-1] if how == "truncate" else data[:-3] + bytes([data[-3] ^ 0xFF]) + data[-2:]
    )


@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_complete_store_is_verified_before_nothing_is_done(setup, tmp_path, how):
    """A complete store: every shard's size and sha256 are checked; a bad one is computed again."""
    model, tok = setup
    full, tps = extract_to_store(model, tok, TEXTS, tmp_path, CFG)
    assert tps is not None and tps > 0
    intact = extract_sharded(model, tok, TEXTS, tmp_path, CFG)
    assert (intact.shards_computed, intact.shards_corrupt, intact.tokens) == (0, 0, 0)
    assert intact.tokens_per_second is None  # nothing computed: None (JSON null), not NaN
    _corrupt(tmp_path / "shard-0000000002-0000000004.npy", how)
    skipped = extract_sharded(model, tok, TEXTS, tmp_path, CFG, verify=False)
    assert (skipped.shards_computed, skipped.shards_corrupt) == (0, 0)  # records trusted
    store = ActivationStore(tmp_path, skipped.meta)
    assert [(r["start"], r["stop"]) for r in store.verify()] == [(2, 4)]
    repaired = extract_sharded(model, tok, TEXTS, tmp_path, CFG)
    assert (repaired.shards_computed, repaired.shards_corrupt) == (1, 1)
    assert repaired.tokens_per_second is not None
    again = ActivationStore(tmp_path, repaired.meta)
    assert again.verify() == []
    np.testing.assert_array_equal(again.load(), full)


def test_store_verify_reports_a_missing_shard(setup, tmp_path):
    model, tok = setup
    run = extract_sharded(model, tok, TEXTS, tmp_path, CFG)
    (tmp_path / "shard-0000000000-0000000002.npy").unlink()
    store = ActivationStore(tmp_path, run.meta)
    assert [(r["start"], r["stop"]) for r in store.verify()] == [(0, 2)]
    again = extract_sharded(model, tok, TEXTS, tmp_path, CFG)
    assert (again.shards_computed, again.shards_corrupt) == (1, 1)
    assert ActivationStore(tmp_path, run.meta).verify() == []


def test_mismatched_store_is_refused(setup, tmp_path):
    model, tok = setup
    extract_to_store(model, tok, TEXTS, tmp_path, CFG)
    with pytest.raises(ValueError, match="different activations"):
        extract_to_store(model, tok, TEXTS, tmp_path, dataclasses.replace(CFG, layers=(1, 3)))
    with pytest.raises(ValueError, match="dataset_hash"):
        extract_to_store(model, tok, [*TEXTS[:-1], "the doctor"], tmp_path, CFG)
    with pytest.raises(ValueError, match="max_tokens"):
        extract_to_store(model, tok, TEXTS, tmp_path, dataclasses.replace(CFG, max_tokens=3))


def test_corrupt_manifest_and_bad_blocks(tmp_path):
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


def test_cli_extract_verifies_and_reports_null_throughput(tmp_path, capsys):
    """``probes extract`` on a complete store: ``tokens_per_second`` is JSON null, not NaN."""
    from _probes_fixtures import save_tiny_llama

    from probes.__main__ import main

    save_tiny_llama(str(tmp_path / "model"))
    data = tmp_path / "inputs.jsonl"
    data.write_text("".join(json.dumps({"inputs": c}) + "\n" for c in TEXTS))
    argv = ["extract", "--model", str(tmp_path / "model"), "--input", str(data)]
    argv += ["--out", str(tmp_path / "s"), "--layers", "1", "--shard-size", "3", "--no-progress"]

    def summary(*extra: str) -> dict[str, object]:
        assert main([*argv, *extra]) == 0
        line = capsys.readouterr().out.strip().splitlines()[-1]
        assert "NaN" not in line
        out: dict[str, object] = json.loads(line)
        return out

    assert summary()["shards_computed"] == 3
    done = summary()
    assert (done["shards_computed"], done["shards_corrupt"], done["tokens_per_second"]) == (
        0,
        0,
        None,
    )
    shard = tmp_path / "s" / "shard-0000000003-0000000006.npy"
    shard.write_bytes(shard.read_bytes()[:-1])
    assert summary("--no-verify")["shards_computed"] == 0  # records trusted
    fixed = summary()
    assert (fixed["shards_computed"], fixed["shards_corrupt"]) == (1, 1)
