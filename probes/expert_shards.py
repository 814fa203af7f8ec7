"""Expert scores at scale: :func:`probes.experts.likelihood_continuation` over the ranks of a run.

Each conversation is scored on its own by the likelihood-continuation expert (McKenzie et al.
2025, "Detecting high-stakes interactions with activation probes", §3: compare the likelihoods of
a "high-stakes" and a "low-stakes" completion), so the conversations can be split freely between
the ranks of a data-parallel run (:mod:`probes.distributed`) without changing any score: they are
assigned by the longest-processing-time rule on their flattened length, each rank writes its part
(atomic ``.npz`` with the row indices and a tag of model, prompt, token limit and dataset), and
rank 0 merges the parts in the original order after a barrier. A part whose tag matches is reused,
so a killed run resumes per rank.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from .distributed import Topology, assign_balanced, current
from .experts import (
    LIKELIHOOD_PROMPTS,
    ContinuationPrompt,
    ExpertScores,
    format_conversation,
    likelihood_continuation,
)
from .extract import Conversation, cache_tag, conversations_hash
from .store import atomic_write_bytes

__all__ = ["MERGED_NAME", "score_experts_sharded"]

MERGED_NAME = "experts.npz"
_FIELDS = ("p_high", "ll_high", "ll_low", "n_tokens")


def _save(path: Path, arrays: dict[str, Any]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def _load_tagged(path: Path, tag: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["tag"]) != tag:
                return None
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, KeyError):
        return None  # not a complete part (never read as scores): recomputed


def score_experts_sharded(
    model: Any,
    tokenizer: Any,
    conversations: Sequence[Conversation],
    directory: str | os.PathLike[str],
    *,
    model_hash: str,
    prompt: ContinuationPrompt | str = "default",
    max_tokens: int | None = None,
    progress: bool = True,
    topology: Topology | None = None,
) -> ExpertScores | None:
    """Score ``conversations`` with the expert, data-parallel; rank 0 returns the merged scores.

    Every rank calls this with the same arguments; the non-zero ranks return ``None``. The merged
    scores are also written to ``directory/experts.npz`` (arrays ``p_high``, ``ll_high``,
    ``ll_low``, ``n_tokens``, ``tag``).
    """
    topo = topology if topology is not None else current()
    if isinstance(prompt, str):
        if prompt not in LIKELIHOOD_PROMPTS:
            raise ValueError(f"prompt: unknown {prompt!r}; known: {sorted(LIKELIHOOD_PROMPTS)}")
        cfg = LIKELIHOOD_PROMPTS[prompt]
    else:
        cfg = prompt
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_tokens: must be a positive integer or None, got {max_tokens!r}")
    out_dir = Path(directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    tag = cache_tag(model_hash, asdict(cfg), max_tokens, conversations_hash(conversations))
    costs = [len(format_conversation(c)) for c in conversations]
    mine = assign_balanced(costs, topo.world_size)[topo.rank]
    part = out_dir / f"part-{tag[:16]}-rank{topo.rank:05d}-of{topo.world_size:05d}.npz"
    if _load_tagged(part, tag) is None:
        res = likelihood_continuation(
            model,
            tokenizer,
            [conversations[i] for i in mine],
            prompt=cfg,
            max_tokens=max_tokens,
            progress=progress,
        )
        _save(
            part,
            {
                "tag": np.asarray(tag),
                "index": np.asarray(mine, dtype=np.int64),
                "seconds": np.float64(res.seconds),
                **{k: getattr(res, k) for k in _FIELDS},
            },
        )
    topo.barrier()
    if not topo.is_main:
        return None
    n = len(conversations)
    merged: dict[str, Any] = {
        "p_high": np.full(n, np.nan),
        "ll_high": np.full(n, np.nan),
        "ll_low": np.full(n, np.nan),
        "n_tokens": np.zeros(n, dtype=np.int64),
    }
    seen = np.zeros(n, dtype=bool)
    seconds = 0.0
    for r in range(topo.world_size):
        path = out_dir / f"part-{tag[:16]}-rank{r:05d}-of{topo.world_size:05d}.npz"
        data = _load_tagged(path, tag)
        if data is None:
            raise RuntimeError(f"directory: part of rank {r} is missing or stale ({path})")
        idx = data["index"]
        for k in _FIELDS:
            merged[k][idx] = data[k]
        seen[idx] = True
        seconds += float(data["seconds"])
    if not seen.all():
        raise RuntimeError(f"directory: {int((~seen).sum())} conversations were not scored")
    _save(out_dir / MERGED_NAME, {"tag": np.asarray(tag), **merged})
    return ExpertScores(seconds=seconds, **merged)
