"""Activation extraction: mean-pooled residual stream entering decoder block ``L``.

Definition (CTD paper §5.1, after McKenzie et al. 2025). The model's input is the chat template
applied to the conversation (``add_generation_prompt=False``) with its first token (BOS) dropped,
optionally truncated to the first ``max_tokens`` tokens. The layer-``L`` activation is the output
of block ``L``'s *input norm*, i.e. the residual stream entering block ``L`` after that norm,
captured with a forward hook on :func:`residual_norm_modules` ``[L]``:

* Llama / Mistral / Qwen / Gemma (``model.model.layers``): ``layers[L].input_layernorm``;
* GPT-2 (``model.transformer.h``): ``h[L].ln_1``.

Tokens are mean-pooled over real (non-padding) positions. Several layers are captured in one
pass, and the forward pass stops (an internal exception raised by the hook) once the deepest
requested layer has been captured, so the model is effectively truncated there. Batches are formed
after sorting the examples by length (less padding, right-padded, attention-masked), under
``torch.inference_mode``, with a tqdm bar.

At scale (:func:`extract_sharded`), rows are cut into store shards of ``shard_size`` consecutive
rows; each shard is batched by length on its own, so its activations do not depend on which
process computes it. The shards not yet stored are assigned to the ranks of a data-parallel run
(:mod:`probes.distributed`; Li et al. 2020, "PyTorch Distributed", §3) balanced by their token
counts; every rank writes its own shards into one :class:`~probes.store.ActivationStore`, and rank
0 writes the manifest after a barrier. The stored result equals that of a one-process run (bitwise
on CPU with the same thread count), and a killed run resumes after its last committed shards.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from tqdm.auto import tqdm  # type: ignore[import-untyped]
from transformers import PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from .data import Message
from .distributed import Topology, assign_balanced, current
from .store import ActivationStore, StoreMeta

__all__ = [
    "ExtractionResult",
    "ExtractionRun",
    "conversations_hash",
    "encode_conversations",
    "extract_activations",
    "extract_sharded",
    "extract_to_store",
    "length_batches",
    "pool_token_ids",
    "residual_norm_modules",
    "right_padded",
    "shard_ranges",
]

Conversation = Sequence[Message] | str


class _StopForward(Exception):
    """Raised by the deepest hook to skip the rest of the network."""


@dataclass(frozen=True)
class ExtractionResult:
    """Pooled activations ``(n, len(layers), hidden)`` (float32) and throughput figures."""

    activations: NDArray[np.float32]
    layers: tuple[int, ...]
    n_tokens: NDArray[np.int64]
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return float(self.n_tokens.sum()) / self.seconds if self.seconds > 0 else float("nan")


@dataclass(frozen=True)
class ExtractionRun:
    """What one rank of :func:`extract_sharded` did, and whether the store is complete.

    ``shards_computed``/``tokens``/``seconds`` count this rank's own work in this call;
    ``complete`` is the state after the final barrier (as seen by rank 0, broadcast).
    """

    directory: str
    meta: StoreMeta
    rank: int
    world_size: int
    n_examples: int
    shards_total: int
    shards_computed: int
    tokens: int
    seconds: float
    complete: bool

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("nan")


def residual_norm_modules(model: PreTrainedModel) -> list[torch.nn.Module]:
    """Per block, the module whose *output* is the residual stream entering it after its norm."""
    base: Any = model.base_model
    blocks: Any
    if hasattr(base, "layers"):
        blocks, attr = base.layers, "input_layernorm"
    elif hasattr(base, "h"):
        blocks, attr = base.h, "ln_1"
    else:
        raise ValueError(
            f"model: unsupported architecture {type(model).__name__} (no .layers or .h blocks)"
        )
    mods = []
    for i, block in enumerate(blocks):
        if not hasattr(block, attr):
            raise ValueError(f"model: block {i} of {type(model).__name__} has no {attr}")
        mods.append(getattr(block, attr))
    return mods


def _as_messages(conv: Conversation) -> list[Message]:
    if isinstance(conv, str):
        return [{"role": "user", "content": conv}]
    return [dict(m) for m in conv]


def encode_conversations(
    tokenizer: PreTrainedTokenizerBase,
    conversations: Sequence[Conversation],
    *,
    max_tokens: int | None = None,
    drop_first: bool = True,
) -> list[list[int]]:
    """Token ids per conversation: chat template, first token (BOS) dropped, then truncated."""
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_tokens: must be a positive integer or None, got {max_tokens!r}")
    out = []
    for i, conv in enumerate(conversations):
        enc: Any = tokenizer.apply_chat_template(
            _as_messages(conv), add_generation_prompt=False, tokenize=True
        )
        ids = list(enc["input_ids"] if isinstance(enc, Mapping) else enc)
        if drop_first:
            ids = ids[1:]
        if max_tokens is not None:
            ids = ids[:max_tokens]
        if not ids:
            raise ValueError(f"conversations[{i}]: no tokens left after dropping BOS")
        out.append([int(t) for t in ids])
    return out


def conversations_hash(conversations: Sequence[Conversation]) -> str:
    """sha256 of the conversations (JSON), recorded in stores to detect a changed dataset."""
    payload = json.dumps([_as_messages(c) for c in conversations], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _check_layers(model: PreTrainedModel, layers: Sequence[int]) -> tuple[int, ...]:
    n = len(residual_norm_modules(model))
    out = tuple(int(x) for x in layers)
    if not out:
        raise ValueError("layers: must not be empty")
    if len(set(out)) != len(out):
        raise ValueError(f"layers: duplicates in {out}")
    bad = [x for x in out if not 0 <= x < n]
    if bad:
        raise ValueError(f"layers: {bad} out of range for a model with {n} blocks")
    return out


def length_batches(seqs: Sequence[Sequence[int]], batch_size: int) -> list[list[int]]:
    """Row indices in batches of ``batch_size``, longest first (less padding per batch)."""
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def right_padded(
    seqs: Sequence[Sequence[int]], rows: Sequence[int], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` of ``seqs[rows]``, right-padded with ``pad_id``."""
    width = max(len(seqs[i]) for i in rows)
    ids = torch.full((len(rows), width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, i in enumerate(rows):
        ids[row, : len(seqs[i])] = torch.tensor(seqs[i], dtype=torch.long)
        mask[row, : len(seqs[i])] = 1
    return ids, mask


def _pool_batches(
    model: PreTrainedModel,
    token_ids: Sequence[Sequence[int]],
    layers: tuple[int, ...],
    *,
    batch_size: int,
    pad_id: int,
    progress: bool,
    desc: str,
) -> NDArray[np.float32]:
    if batch_size < 1:
        raise ValueError(f"batch_size: must be positive, got {batch_size!r}")
    mods = residual_norm_modules(model)
    emb: Any = model.get_input_embeddings()
    device: torch.device = emb.weight.device
    hidden = int(model.config.hidden_size)
    out = np.zeros((len(token_ids), len(layers), hidden), dtype=np.float32)
    captured: dict[int, torch.Tensor] = {}
    mask_holder: list[torch.Tensor] = []
    deepest = max(layers)

    def make_hook(layer: int) -> Callable[..., None]:
        def hook(_mod: torch.nn.Module, _inp: Any, output: Any) -> None:
            hs = output[0] if isinstance(output, tuple) else output
            mask = mask_holder[0].to(torch.float32).unsqueeze(-1)
            pooled = (hs.float() * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)
            captured[layer] = pooled.float()
            if layer == deepest:
                raise _StopForward

        return hook

    handles = [mods[layer].register_forward_hook(make_hook(layer)) for layer in layers]
    batches = length_batches(token_ids, batch_size)
    try:
        with torch.inference_mode():
            for batch in tqdm(batches, desc=desc, disable=not progress, unit="batch"):
                ids, mask = right_padded(token_ids, batch, pad_id)
                ids, mask = ids.to(device), mask.to(device)
                mask_holder[:] = [mask]
                captured.clear()
                try:
                    model(input_ids=ids, attention_mask=mask, use_cache=False)
                except _StopForward:
                    pass
                for k, layer in enumerate(layers):
                    out[batch, k, :] = captured[layer].cpu().numpy()
    finally:
        for h in handles:
            h.remove()
    return out


def pool_token_ids(
    model: PreTrainedModel,
    token_ids: Sequence[Sequence[int]],
    *,
    layers: Sequence[int],
    pad_id: int = 0,
    batch_size: int = 8,
    progress: bool = False,
) -> NDArray[np.float32]:
    """Mean-pooled layer activations of tokenised inputs (as :func:`extract_activations`).

    Returns ``(len(token_ids), len(layers), hidden)`` float32; empty inputs are refused.
    """
    lays = _check_layers(model, layers)
    for i, seq in enumerate(token_ids):
        if len(seq) == 0:
            raise ValueError(f"token_ids[{i}]: empty")
    return _pool_batches(
        model,
        token_ids,
        lays,
        batch_size=batch_size,
        pad_id=int(pad_id),
        progress=progress,
        desc="activations",
    )


def extract_activations(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    conversations: Sequence[Conversation],
    *,
    layers: Sequence[int],
    max_tokens: int | None = None,
    batch_size: int = 8,
    progress: bool = True,
) -> ExtractionResult:
    """Mean-pooled layer activations for each conversation (see the module docstring)."""
    lays = _check_layers(model, layers)
    token_ids = encode_conversations(tokenizer, conversations, max_tokens=max_tokens)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    start = time.perf_counter()
    acts = _pool_batches(
        model,
        token_ids,
        lays,
        batch_size=batch_size,
        pad_id=int(pad),
        progress=progress,
        desc="activations",
    )
    seconds = time.perf_counter() - start
    n_tokens = np.asarray([len(t) for t in token_ids], dtype=np.int64)
    return ExtractionResult(activations=acts, layers=lays, n_tokens=n_tokens, seconds=seconds)


def shard_ranges(n_examples: int, shard_size: int) -> list[tuple[int, int]]:
    """Row ranges ``[start, stop)`` of the store shards: ``shard_size`` consecutive rows each."""
    if shard_size < 1:
        raise ValueError(f"shard_size: must be positive, got {shard_size!r}")
    if n_examples < 0:
        raise ValueError(f"n_examples: must be non-negative, got {n_examples!r}")
    return [(a, min(a + shard_size, n_examples)) for a in range(0, n_examples, shard_size)]


def extract_sharded(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    conversations: Sequence[Conversation],
    directory: str | os.PathLike[str],
    *,
    layers: Sequence[int],
    model_name: str,
    model_hash: str,
    max_tokens: int | None = None,
    batch_size: int = 8,
    shard_size: int = 256,
    dtype: str = "float32",
    progress: bool = True,
    topology: Topology | None = None,
) -> ExtractionRun:
    """Extract into an :class:`ActivationStore`, data-parallel over the ranks of ``topology``.

    Every rank calls this with the same arguments (``topology`` defaults to
    :func:`probes.distributed.current`). Shards already committed in ``directory`` are skipped;
    the rest are tokenised and assigned to ranks by token count (longest-processing-time rule),
    each rank writes its shards, and rank 0 writes the manifest once every rank is done.
    Returns this rank's :class:`ExtractionRun`; the activations are read with
    ``ActivationStore(directory, meta).load()`` or :func:`extract_to_store`.
    """
    topo = topology if topology is not None else current()
    if topo.world_size > 1 and not topo.distributed:
        raise ValueError("topology: world_size > 1 needs an initialised torch.distributed group")
    ranges = shard_ranges(len(conversations), shard_size)
    if batch_size < 1:
        raise ValueError(f"batch_size: must be positive, got {batch_size!r}")
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_tokens: must be a positive integer or None, got {max_tokens!r}")
    lays = _check_layers(model, layers)
    meta = StoreMeta(
        model=model_name,
        model_hash=model_hash,
        layers=lays,
        pooling="mean",
        dtype=dtype,
        max_tokens=max_tokens,
        dataset_hash=conversations_hash(conversations),
        n_examples=len(conversations),
        hidden_size=int(model.config.hidden_size),
    )
    # Rank 0 creates (or checks) the store before the others open it; it alone decides which
    # shards are still to do, so that every rank plans from the same state.
    store = ActivationStore(directory, meta) if topo.is_main else None
    topo.barrier()
    if store is None:
        store = ActivationStore(directory, meta, create=False)
    todo_local = [k for k, (a, b) in enumerate(ranges) if not store.has(a, b)]
    todo: list[int] = topo.broadcast(todo_local) if topo.world_size > 1 else todo_local
    # Tokenise a strided share of the shards to learn their costs, then balance by tokens.
    encoded: dict[int, list[list[int]]] = {}

    def encode(k: int) -> list[list[int]]:
        if k not in encoded:
            a, b = ranges[k]
            encoded[k] = encode_conversations(tokenizer, conversations[a:b], max_tokens=max_tokens)
        return encoded[k]

    share = todo[topo.rank :: topo.world_size]
    local_costs = {k: sum(len(t) for t in encode(k)) for k in share}
    costs: dict[int, int] = {}
    for part in topo.all_gather(local_costs) if topo.world_size > 1 else [local_costs]:
        costs.update(part)
    plan = assign_balanced([costs[k] for k in todo], topo.world_size)
    mine = [todo[j] for j in plan[topo.rank]]
    for k in list(encoded):
        if k not in mine:
            del encoded[k]
    pad = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    tokens = 0
    seconds = 0.0
    desc = "shards" if topo.world_size == 1 else f"shards (rank {topo.rank})"
    for k in tqdm(mine, desc=desc, disable=not progress, unit="shard"):
        chunk = encode(k)
        t0 = time.perf_counter()
        block = _pool_batches(
            model, chunk, lays, batch_size=batch_size, pad_id=pad, progress=False, desc="batch"
        )
        seconds += time.perf_counter() - t0
        tokens += sum(len(t) for t in chunk)
        store.write_shard(ranges[k][0], block)
        del encoded[k]
    topo.barrier()
    complete = store.finalize() if topo.is_main else False
    if topo.world_size > 1:
        complete = bool(topo.broadcast(complete))
    if not complete:
        raise RuntimeError(
            f"directory: store {directory} is incomplete after extraction "
            f"({store.n_done}/{len(conversations)} rows); a rank failed to write its shards"
        )
    return ExtractionRun(
        directory=str(directory),
        meta=meta,
        rank=topo.rank,
        world_size=topo.world_size,
        n_examples=len(conversations),
        shards_total=len(ranges),
        shards_computed=len(mine),
        tokens=tokens,
        seconds=seconds,
        complete=complete,
    )


def extract_to_store(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    conversations: Sequence[Conversation],
    directory: str | os.PathLike[str],
    *,
    layers: Sequence[int],
    model_name: str,
    model_hash: str,
    max_tokens: int | None = None,
    batch_size: int = 8,
    shard_size: int = 256,
    dtype: str = "float32",
    progress: bool = True,
    topology: Topology | None = None,
) -> tuple[NDArray[Any], float]:
    """Extract into an :class:`ActivationStore`, resuming after its committed shards.

    Returns the full array ``(n, len(layers), hidden)`` and the tokens/second of the shards
    computed in this call by this rank (NaN when everything was already stored). See
    :func:`extract_sharded` for the data-parallel case (``topology``).
    """
    run = extract_sharded(
        model,
        tokenizer,
        conversations,
        directory,
        layers=layers,
        model_name=model_name,
        model_hash=model_hash,
        max_tokens=max_tokens,
        batch_size=batch_size,
        shard_size=shard_size,
        dtype=dtype,
        progress=progress,
        topology=topology,
    )
    return ActivationStore(directory, run.meta, create=False).load(), run.tokens_per_second
