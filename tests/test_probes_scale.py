"""Probes at scale: data-parallel extraction (gloo), SIGKILL + resume, model loading, lazy CLI."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from _probes_fixtures import (  # noqa: E402
    TEXTS,
    conversations,
    save_tiny_llama,
    tiny_model,
    tiny_tokenizer,
)

from probes.distributed import Topology, assign_balanced  # noqa: E402
from probes.expert_shards import score_experts_sharded  # noqa: E402
from probes.experts import ContinuationPrompt, ExpertScores, likelihood_continuation  # noqa: E402
from probes.extract import ExtractionConfig, extract_activations, extract_to_store  # noqa: E402
from probes.models import load_model  # noqa: E402
from probes.store import MANIFEST_NAME, ActivationStore, StoreMeta  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "_probes_fixtures.py"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONPATH=os.pathsep.join([str(ROOT), str(FIXTURES.parent)]),
    )
    return env


def test_assign_balanced_is_deterministic_and_balanced() -> None:
    costs = [9, 1, 8, 2, 7, 3, 3, 3]
    plan = assign_balanced(costs, 3)
    assert sorted(i for part in plan for i in part) == list(range(len(costs)))
    loads = [sum(costs[i] for i in part) for part in plan]
    assert max(loads) - min(loads) <= max(costs)
    assert plan == assign_balanced(costs, 3)
    assert assign_balanced(costs, 1) == [list(range(len(costs)))]
    with pytest.raises(ValueError, match="world_size"):
        assign_balanced(costs, 0)
    with pytest.raises(ValueError, match="rank"):
        Topology(rank=2, world_size=2)


def test_help_and_missing_torch_without_torch() -> None:
    block = "import sys; sys.modules['torch'] = None; sys.modules['transformers'] = None; "
    run = "import runpy; runpy.run_module('probes', run_name='__main__', alter_sys=True)"
    for argv, code in ((["--help"], 0), (["extract", "--help"], 0)):
        out = subprocess.run(
            [sys.executable, "-c", f"{block}sys.argv = ['probes', *{argv!r}]; {run}"],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=60,
        )
        assert out.returncode == code, out.stderr
        assert "Traceback" not in out.stderr
        assert "usage: python -m probes" in out.stdout
    assert (
        "pip install" in out.stdout
        or "pip install"
        in subprocess.run(
            [sys.executable, "-c", f"{block}sys.argv = ['probes', '--help']; {run}"],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=60,
        ).stdout
    )
    argv = ["extract", "--model", "m", "--input", "x.jsonl", "--out", "o", "--layers", "1"]
    out = subprocess.run(
        [sys.executable, "-c", f"{block}sys.argv = ['probes', *{argv!r}]; {run}"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and "pip install" in out.stderr


def test_local_folder_hub_cache_sdpa_and_device_map(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "tiny-llama"
    save_tiny_llama(str(folder))
    tok = tiny_tokenizer()
    reference = extract_activations(
        tiny_model("llama", len(tok)), tok, TEXTS, layers=[1, 3], progress=False
    ).activations

    local = load_model(folder, device="cpu")
    assert local.model.config._attn_implementation == "sdpa"
    assert local.device == torch.device("cpu") and local.dtype == torch.float32
    assert len(local.source_hash) == 64  # sha256 of the single safetensors file
    got = extract_activations(local.model, local.tokenizer, TEXTS, layers=[1, 3], progress=False)
    np.testing.assert_allclose(got.activations, reference, rtol=1e-5, atol=1e-6)

    import probes.models as pm

    seen: list[dict[str, object]] = []
    original = pm.AutoModelForCausalLM.from_pretrained

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(pm.AutoModelForCausalLM, "from_pretrained", spy)
    mapped = load_model(folder, device_map="auto")  # accelerate places it (all on the CPU here)
    monkeypatch.undo()
    assert seen[-1]["device_map"] == "auto" and seen[-1]["attn_implementation"] == "sdpa"
    assert mapped.device == torch.device("cpu")
    got = extract_activations(mapped.model, mapped.tokenizer, TEXTS, layers=[1], progress=False)
    np.testing.assert_allclose(got.activations[:, 0], reference[:, 0], rtol=1e-5, atol=1e-6)

    # a hub name, resolved offline from a hub cache laid out as huggingface_hub writes it
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--tiny--llama"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    snap.parent.mkdir(parents=True)
    folder.rename(snap)
    hub = load_model("tiny/llama", hub_cache_dir=tmp_path / "hub", device="cpu")
    assert hub.source_hash == "hub:tiny/llama@main"
    got = extract_activations(hub.model, hub.tokenizer, TEXTS, layers=[1, 3], progress=False)
    np.testing.assert_allclose(got.activations, reference, rtol=1e-5, atol=1e-6)


def test_torn_and_uncommitted_shards_are_never_read(tmp_path: Path) -> None:
    meta = StoreMeta(
        model="m",
        model_hash="h",
        layers=(0,),
        pooling="mean",
        dtype="float32",
        max_tokens=None,
        dataset_hash="d",
        n_examples=6,
        hidden_size=4,
    )
    store = ActivationStore(tmp_path, meta)
    rows = np.arange(24, dtype=np.float32).reshape(6, 1, 4)
    store.write_shard(0, rows[:2])
    rec = store.write_shard(2, rows[2:4])
    # killed after the shard was renamed into place but before its record: not committed
    (tmp_path / "shard-0000000004-0000000006.npy").write_bytes(b"\x93NUMPY torn")
    # a torn temporary record and a torn record under the final name are not committed either
    (tmp_path / ".tmp-abc").write_bytes(b'{"file": "shard-00')
    (tmp_path / "shard-0000000004-0000000006.json").write_text('{"file": "shard-000000000')
    reopened = ActivationStore(tmp_path, meta)
    assert reopened.n_done == 4 and not reopened.has(4, 6)
    np.testing.assert_array_equal(reopened.load(allow_partial=True), rows[:4])
    reopened.write_shard(4, rows[4:])
    assert reopened.finalize()
    np.testing.assert_array_equal(ActivationStore(tmp_path, meta).load(), rows)
    # a committed shard whose bytes changed (torn by the disk, or tampered with) is refused
    path = tmp_path / rec["file"]
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(ValueError, match="corrupt or tampered"):
        ActivationStore(tmp_path, meta).load()
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert [s["start"] for s in manifest["shards"]] == [0, 2, 4]


def test_experts_sharded_equal_one_process(tmp_path: Path) -> None:
    tok = tiny_tokenizer()
    model = tiny_model("llama", len(tok))
    convs = conversations(5)
    prompt = ContinuationPrompt(
        system_prompt="analyze if the conversation is high stakes",
        high_completion="The given conversation is high stakes",
        low_completion="The given conversation is low stakes",
    )
    whole = likelihood_continuation(model, tok, convs, prompt=prompt, max_tokens=12, progress=False)

    def rank(r: int) -> ExpertScores | None:
        return score_experts_sharded(
            model,
            tok,
            convs,
            tmp_path,
            model_hash="h",
            prompt=prompt,
            max_tokens=12,
            progress=False,
            topology=Topology(rank=r, world_size=2),
        )

    # ranks run one after the other (a simulated group: the barrier is a no-op)
    assert rank(1) is None
    merged = rank(0)
    assert merged is not None
    # every conversation is scored, once, in the original order (float noise only: the expert
    # may batch conversations, so a rank's batches differ from the one-process run's)
    np.testing.assert_array_equal(merged.n_tokens, whole.n_tokens)
    for field in ("p_high", "ll_high", "ll_low"):
        np.testing.assert_allclose(getattr(merged, field), getattr(whole, field), atol=1e-5)
    with np.load(tmp_path / "experts.npz") as saved:
        np.testing.assert_array_equal(saved["p_high"], merged.p_high)


def test_gloo_two_ranks_and_sigkill_resume_equal_one_process(tmp_path: Path) -> None:
    """One launcher process forks the ranks of every step (torchrun's env:// protocol, gloo).

    Steps: an uninterrupted one-process run (the reference); an uninterrupted 2-rank run; then a
    chain on one store where each run is killed with SIGKILL at a seeded random failpoint (one
    process, then one rank of two, then the other rank of two), and a last 2-rank run resumes.
    """
    model_dir = tmp_path / "model"
    save_tiny_llama(str(model_dir))
    data = tmp_path / "inputs.jsonl"
    convs = conversations(24)
    data.write_text("".join(json.dumps({"inputs": c}) + "\n" for c in convs))

    def argv(out: str) -> list[str]:
        return [
            "extract",
            "--model",
            str(model_dir),
            "--input",
            str(data),
            "--out",
            str(tmp_path / out),
            "--layers",
            "1,3",
            "--batch-size",
            "3",
            "--shard-size",
            "2",
            "--no-progress",
        ]

    rng = random.Random(2024)
    kills = [
        (1, {"0": f"{rng.choice(['write', 'shard', 'record'])}:{rng.randint(1, 3)}"}),
        (1, {"0": f"{rng.choice(['write', 'shard', 'record'])}:{rng.randint(1, 3)}"}),
        (2, {"1": f"{rng.choice(['write', 'shard', 'record'])}:{rng.randint(1, 2)}"}),
        (2, {"0": f"{rng.choice(['write', 'shard', 'record'])}:{rng.randint(1, 2)}"}),
    ]
    steps = [
        {"argv": argv("ref"), "world": 1},
        {"argv": argv("two"), "world": 2},
        *({"argv": argv("chain"), "world": w, "failpoints": fp} for w, fp in kills),
        {"argv": argv("chain"), "world": 2},
    ]
    out = subprocess.run(
        [sys.executable, str(FIXTURES), json.dumps(steps)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=240,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    codes = json.loads(out.stdout.strip().splitlines()[-1])
    assert codes[0] == [0] and codes[1] == [0, 0] and codes[-1] == [0, 0]
    for (_, fp), got in zip(kills, codes[2:-1], strict=True):
        killed = int(next(iter(fp)))
        assert got[killed] == -9, (fp, got)  # the failpoint fired: a real SIGKILL

    tok = tiny_tokenizer()
    model = tiny_model("llama", len(tok))
    meta_of = lambda d: StoreMeta.from_json(  # noqa: E731
        json.loads((tmp_path / d / MANIFEST_NAME).read_text())["meta"]
    )
    ref = ActivationStore(tmp_path / "ref", meta_of("ref"), create=False).load()
    assert ref.shape == (24, 2, 32)
    direct = extract_activations(model, tok, convs, layers=[1, 3], progress=False).activations
    np.testing.assert_allclose(ref, direct, rtol=1e-4, atol=1e-5)
    for d in ("two", "chain"):
        got = ActivationStore(tmp_path / d, meta_of(d), create=False).load()
        np.testing.assert_array_equal(got, ref)  # bitwise
    # the store written by the CLI is the one extract_to_store resumes (nothing left to do)
    cfg = ExtractionConfig(
        layers=(1, 3),
        model_name=str(model_dir),
        model_hash=meta_of("chain").model_hash,
        shard_size=2,
        progress=False,
    )
    again, tps = extract_to_store(model, tok, convs, tmp_path / "chain", cfg)
    assert tps is None  # nothing left to compute: no throughput (JSON null), not NaN
    np.testing.assert_array_equal(again, ref)
