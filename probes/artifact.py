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
:func:`run_stage` runs one part only (two single-threaded processes, one per stage, use two CPU
cores better than one two-threaded process on a busy machine).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from .artifact_config import (
    EMBEDDING_EXPERT,
    LIKELIHOOD_EXPERTS,
    MONITORED,
    STAGES,
    ArtifactConfig,
)
from .artifact_stages import (
    choose_features,
    log,
    package_versions,
    split_metrics,
    stage_activations,
    stage_embedding_expert,
    stage_embeddings,
    stage_likelihood_expert,
)
from .data import StakesDataset, load_stakes
from .linear import fit_logistic
from .prefix_pool import POOLINGS

__all__ = [
    "EMBEDDING_EXPERT",
    "LIKELIHOOD_EXPERTS",
    "MONITORED",
    "STAGES",
    "ArtifactConfig",
    "ChosenFeatures",
    "artifact_manifest",
    "build_artifact",
    "load_artifact",
    "run_stage",
]

Arrays = dict[str, NDArray[np.generic]]


@dataclass(frozen=True)
class ChosenFeatures:
    """The (layer, pooling, context) chosen on dev, and the feature width."""

    layer: int
    pooling: str
    context: int
    hidden_size: int


@dataclass(frozen=True)
class _Rows:
    """Every row of the build, in file order."""

    datasets: list[StakesDataset]
    ids: list[str]
    convs: list[Any]
    split: NDArray[np.str_]
    group: NDArray[np.str_]
    label: NDArray[np.int8]

    @property
    def eval_sets(self) -> list[StakesDataset]:
        return [ds for ds in self.datasets if ds.split in ("dev", "test")]


def _work_dir(cfg: ArtifactConfig) -> Path:
    work = cfg.work_dir or Path.home() / ".cache" / "ctd_stats" / "artifact-work"
    work.mkdir(parents=True, exist_ok=True)
    return work


def _rows(cfg: ArtifactConfig) -> _Rows:
    datasets = load_stakes(cap_per_group=cfg.cap_per_group, limit=cfg.limit)
    log(
        f"{sum(len(d) for d in datasets)} examples: "
        + ", ".join(f"{d.split}/{d.group}={len(d)}" for d in datasets)
    )
    return _Rows(
        datasets=datasets,
        ids=[i for ds in datasets for i in ds.ids],
        convs=[c for ds in datasets for c in ds.inputs],
        split=np.asarray([ds.split for ds in datasets for _ in ds.ids]),
        group=np.asarray([ds.group for ds in datasets for _ in ds.ids]),
        label=np.concatenate([ds.labels for ds in datasets]).astype(np.int8),
    )


def run_stage(cfg: ArtifactConfig) -> Path:
    """Fill one stage's resumable cache; returns the work folder holding it.

    ``cfg.stage`` is ``"activations"``, ``"experts"`` (the likelihood experts) or
    ``"embeddings"`` (the strong expert's encoder); :func:`build_artifact` then computes what is
    still missing and assembles the artifact.
    """
    if cfg.stage == "all":
        raise ValueError("cfg: stage 'all' is build_artifact's; run_stage runs one stage")
    torch.manual_seed(0)
    work = _work_dir(cfg)
    rows = _rows(cfg)
    if cfg.stage == "experts":
        eval_sets = rows.eval_sets[::-1] if cfg.reverse_files else rows.eval_sets
        for key in (e for e in cfg.experts if e in LIKELIHOOD_EXPERTS):
            stage_likelihood_expert(key, eval_sets, cfg, work)
    elif cfg.stage == "embeddings":
        stage_embeddings(rows.convs, cfg, work)
    else:
        feats, mon_info = stage_activations(rows.convs, cfg, work)
        log(f"activations {feats.shape} ({mon_info['tokens_per_second']} tokens/s)")
    return work


def build_artifact(cfg: ArtifactConfig) -> Path:
    """Build the artifact described in the module docstring; returns the ``.npz`` path.

    Computes what the stage caches in ``work_dir`` do not hold yet (see :func:`run_stage`),
    then writes the ``.npz`` and its manifest (:func:`artifact_manifest`).
    """
    if cfg.stage != "all":
        raise ValueError(f"cfg: build_artifact needs stage 'all' (got {cfg.stage!r}): run_stage")
    t_start = time.perf_counter()
    torch.manual_seed(0)
    work = _work_dir(cfg)
    rows = _rows(cfg)
    label, split, group = rows.label, rows.split, rows.group

    # 1. the monitored model's features at every candidate (resumable shards)
    feats, mon_info = stage_activations(rows.convs, cfg, work)
    log(f"activations {feats.shape} ({mon_info['tokens_per_second']} tokens/s)")

    # 2. layer, pooling and context on dev; the safety probe on the stored (float16) features
    candidates, (j, k, m) = choose_features(feats, label, split, cfg)
    chosen = feats[:, j, k, m, :].astype(np.float16)
    pick = ChosenFeatures(
        layer=int(cfg.candidate_layers[m]),
        pooling=POOLINGS[k],
        context=int(cfg.contexts[j]),
        hidden_size=int(chosen.shape[1]),
    )
    del feats
    tr = split == "train"
    chosen64 = chosen.astype(np.float64)
    probe_scores = fit_logistic(chosen64[tr], label[tr]).predict_proba(chosen64)
    probe_info = split_metrics(label, probe_scores, split, group)
    log(
        f"safety probe: layer {pick.layer}, {pick.pooling} over {pick.context} tokens; test "
        f"accuracy {probe_info['test']['accuracy']:.3f}, AUROC {probe_info['test']['auroc']:.3f}"
    )

    # 3. experts: dev + test scores
    mask = split != "train"
    arrays: Arrays = {}
    expert_info: dict[str, dict[str, Any]] = {}
    for key in cfg.experts:
        col = np.full(len(rows.ids), np.nan, dtype=np.float32)
        if key == EMBEDDING_EXPERT:
            scores, info = stage_embedding_expert(rows.convs, label, split, group, cfg, work)
            col[mask] = scores[mask].astype(np.float32)
        else:
            by_file, info = stage_likelihood_expert(key, rows.eval_sets, cfg, work)
            col[mask] = np.concatenate([by_file[ds.name] for ds in rows.eval_sets]).astype(
                np.float32
            )
        info.update(split_metrics(label, col.astype(np.float64), split, group))
        arrays[f"expert_{key}"] = col
        expert_info[key] = info
        log(
            f"expert {key}: test accuracy {info['test']['accuracy']:.3f}, "
            f"AUROC {info['test']['auroc']:.3f}"
        )

    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    out = cfg.out_dir / f"{cfg.name}.npz"
    tmp = cfg.out_dir / f".{cfg.name}.tmp.npz"
    payload: dict[str, Any] = {  # Any: numpy's savez stub types **kwds like allow_pickle
        "ids": np.asarray(rows.ids),
        "group": group,
        "split": split,
        "label": label,
        "activations": chosen,
        "probe": probe_scores,
        **arrays,
    }
    np.savez_compressed(tmp, **payload)
    os.replace(tmp, out)
    manifest = artifact_manifest(
        cfg,
        rows.datasets,
        pick,
        expert_columns=list(arrays),
        monitored=mon_info,
        probe=probe_info,
        candidates=candidates,
        experts=expert_info,
        npz=out,
        build_seconds=time.perf_counter() - t_start,
    )
    man = cfg.out_dir / f"{cfg.name}.manifest.json"
    man.write_text(json.dumps(manifest, indent=1, default=float) + "\n", encoding="utf-8")
    log(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return out


def artifact_manifest(
    cfg: ArtifactConfig,
    datasets: list[StakesDataset],
    chosen: ChosenFeatures,
    *,
    expert_columns: list[str],
    monitored: dict[str, Any],
    probe: dict[str, Any],
    candidates: list[dict[str, Any]],
    experts: dict[str, dict[str, Any]],
    npz: Path,
    build_seconds: float,
) -> dict[str, Any]:
    """The provenance manifest of an artifact (JSON-ready; see the module docstring)."""
    layer, pooling, context = chosen.layer, chosen.pooling, chosen.context
    pooling_words = "mean over" if pooling == "mean" else "last of"
    return {
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
            "activations": f"float16 (n, {chosen.hidden_size}), layer {layer}, {pooling_words} "
            f"the first {context} tokens",
            "probe": "float64 P(high) of the safety probe (logistic, C=1, fitted on train)",
            **{k: "float32 P(high) from the expert, NaN on train" for k in expert_columns},
        },
        "n_examples": sum(len(d) for d in datasets),
        "counts": {f"{d.split}/{d.group}": len(d) for d in datasets},
        "monitored_model": {k: v for k, v in monitored.items() if k not in ("seconds", "tokens")},
        "layer": layer,
        "pooling": pooling,
        "context": context,
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
            **probe,
        },
        "layer_selection": {
            "rule": "logistic probe (C=1) fitted on train at every (context, pooling, layer), "
            "highest AUROC on dev",
            "per_layer": candidates,
        },
        "experts": experts,
        "data_files": {d.name: d.sha256 for d in datasets},
        "activation_extraction": {
            "seconds": monitored["seconds"],
            "tokens": monitored["tokens"],
            "tokens_per_second": monitored["tokens_per_second"],
        },
        "build_seconds_this_run": build_seconds,
        "compute_seconds": {
            "activations": monitored["seconds"],
            **{f"expert_{k}": v["scoring_seconds"] for k, v in experts.items()},
            "note": "stage runs; activations and experts can run side by side (--stage), so "
            "wall-clock time is below the sum",
        },
        "built_at_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "device": "cuda" if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)",
        "torch_threads": torch.get_num_threads(),
        "versions": package_versions(),
        "npz_sha256": hashlib.sha256(npz.read_bytes()).hexdigest(),
    }


def load_artifact(path: str | os.PathLike[str]) -> Arrays:
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
