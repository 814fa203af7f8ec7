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
from collections.abc import Callable, Iterator, Mapping, Sequence
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
    "ExtractionConfig",
    "ExtractionResult",
    "ExtractionRun",
    "cache_tag",
    "conversations_hash",
    "encode_conversations",
    "extract_activations",
    "extract_sharded",
    "extract_to_store",
    "hooked_batches",
    "length_batches",
    "pool_token_ids",
    "residual_norm_modules",
    "right_padded",
    "shard_ranges",
    "throughput",
]

Conversation = Sequence[Message] | str


class _StopForward(Exception):
    """Raised by the deepest hook to skip the rest of the network."""


def throughput(tokens: int | float, seconds: float) -> float | None:
    """Tokens per second; ``None`` when nothing was computed (written ``null`` in JSON, not NaN)."""
    return float(tokens) / seconds if seconds > 0 else None


@dataclass(frozen=True)
class ExtractionConfig:
    """What :func:`extract_sharded` / :func:`extract_to_store` extract and how; every rank alike.

    ``layers`` are block indices (the activation definition is the module docstring's);
    ``model_name`` and ``model_hash`` are recorded in the store (:class:`~probes.store.StoreMeta`)
    with ``max_tokens`` (token limit per input, ``None``: whole input) and ``dtype`` (stored
    precision). ``shard_size`` rows make one store shard; ``batch_size`` inputs one forward pass.
    """

    layers: tuple[int, ...]
    model_name: str
    model_hash: str
    max_tokens: int | None = None
    batch_size: int = 8
    shard_size: int = 256
    dtype: str = "float32"
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(int(x) for x in self.layers))
        if self.shard_size < 1:
            raise ValueError(f"shard_size: must be positive, got {self.shard_size!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size: must be positive, got {self.batch_size!r}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(
                f"max_tokens: must be a positive integer or None, got {self.max_tokens!r}"
            )


@dataclass(frozen=True)
class ExtractionResult:
    """Pooled activations ``(n, len(layers), hidden)`` (float32) and throughput figures."""

    activations: NDArray[np.float32]
    layers: tuple[int, ...]
    n_tokens: NDArray[np.int64]
    seconds: float

    @property
    def tokens_per_second(self) -> float | None:
        return throughput(int(self.n_tokens.sum()), self.seconds)


@dataclass(frozen=True)
class ExtractionRun:
    """What one rank of :func:`extract_sharded` did, and whether the store is complete.

    ``shards_computed``/``tokens``/``seconds`` count this rank's own work in this call;
    ``shards_corrupt`` the committed shards that failed verification and were computed again;
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
    shards_corrupt: int = 0

    @property
    def tokens_per_second(self) -> float | None:
        """``None`` when this rank computed nothing (the store was already complete)."""
        return throughput(self.tokens, self.seconds)


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


def cache_tag(*parts: object) -> str:
    """sha256 (hex) of ``parts`` as JSON: the key of a cached result computed from them.

    Every cache of the package (expert parts, artifact stages) is keyed by this one function,
    so a cache written by one version is found by the next as long as its inputs are the same.
    """
    return hashlib.sha256(json.dumps(list(parts)).encode("utf-8")).hexdigest()


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


def input_device(model: PreTrainedModel) -> torch.device:
    """The device of the model's input embeddings (where its input ids go)."""
    emb: torch.nn.Module = model.get_input_embeddings()
    weight = emb.weight
    assert isinstance(weight, torch.Tensor)
    return weight.device


#: What a hook pools: ``(hidden states (batch, tokens, hidden), attention mask) -> tensor``.
Pool = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def hooked_batches(
    model: PreTrainedModel,
    seqs: Sequence[Sequence[int]],
    layers: tuple[int, ...],
    pool: Pool,
    *,
    batch_size: int,
    pad_id: int,
    progress: bool,
    desc: str,
) -> Iterator[tuple[list[int], list[NDArray[np.float32]]]]:
    """Per length batch: its row indices and ``pool`` of each layer's input-norm output.

    Forward hooks on :func:`residual_norm_modules` capture the layers; the pass stops at the
    deepest one. Batches are right-padded and attention-masked, under ``torch.inference_mode``.
    """
    mods = residual_norm_modules(model)
    device = input_device(model)
    captured: dict[int, torch.Tensor] = {}
    mask_holder: list[torch.Tensor] = []
    deepest = max(layers)

    def make_hook(layer: int) -> Callable[[torch.nn.Module, object, object], None]:
        def hook(_mod: torch.nn.Module, _inp: object, output: object) -> None:
            hs = output[0] if isinstance(output, tuple) else output
            assert isinstance(hs, torch.Tensor)
            captured[layer] = pool(hs, mask_holder[0])
            if layer == deepest:
                raise _StopForward

        return hook

    handles = [mods[layer].register_forward_hook(make_hook(layer)) for layer in layers]
    try:
        with torch.inference_mode():
            for batch in tqdm(
                length_batches(seqs, batch_size), desc=desc, disable=not progress, unit="batch"
            ):
                ids, mask = right_padded(seqs, batch, pad_id)
                ids, mask = ids.to(device), mask.to(device)
                mask_holder[:] = [mask]
                captured.clear()
                try:
                    model(input_ids=ids, attention_mask=mask, use_cache=False)
                except _StopForward:
                    pass
                yield batch, [captured[layer].cpu().numpy() for layer in layers]
    finally:
        for h in handles:
            h.remove()


def _mean_pool(hs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the real (unmasked) tokens, in float32."""
    weights = mask.to(torch.float32).unsqueeze(-1)
    return ((hs.float() * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)).float()


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
    hidden = int(model.config.hidden_size)
    out = np.zeros((len(token_ids), len(layers), hidden), dtype=np.float32)
    for batch, pooled in hooked_batches(
        model,
        token_ids,
        layers,
        _mean_pool,
        batch_size=batch_size,
        pad_id=pad_id,
        progress=progress,
        desc=desc,
    ):
        for k, block in enumerate(pooled):
            out[batch, k, :] = block
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
    config: ExtractionConfig,
    *,
    topology: Topology | None = None,
    verify: bool = True,
) -> ExtractionRun:
    """Extract into an :class:`ActivationStore`, data-parallel over the ranks of ``topology``.

    Every rank calls this with the same arguments (``topology`` defaults to
    :func:`probes.distributed.current`). Shards already committed in ``directory`` are skipped
    once their size and sha256 match their commit records (``verify=False`` trusts the records; a
    shard that fails is computed again); the rest are tokenised and assigned to ranks by token
    count (longest-processing-time rule), each rank writes its shards, and rank 0 writes the
    manifest once every rank is done. Returns this rank's :class:`ExtractionRun`; the activations
    are read with ``ActivationStore(directory, meta).load()`` or :func:`extract_to_store`.
    """
    topo = topology if topology is not None else current()
    if topo.world_size > 1 and not topo.distributed:
        raise ValueError("topology: world_size > 1 needs an initialised torch.distributed group")
    cfg = config
    ranges = shard_ranges(len(conversations), cfg.shard_size)
    lays = _check_layers(model, cfg.layers)
    meta = StoreMeta(
        model=cfg.model_name,
        model_hash=cfg.model_hash,
        layers=lays,
        pooling="mean",
        dtype=cfg.dtype,
        max_tokens=cfg.max_tokens,
        dataset_hash=conversations_hash(conversations),
        n_examples=len(conversations),
        hidden_size=int(model.config.hidden_size),
    )
    # Rank 0 creates (or checks) the store before the others open it; it alone decides which
    # shards are still to do, so that every rank plans from the same state.
    store = ActivationStore(directory, meta) if topo.is_main else None
    topo.barrier()
    corrupt: list[int] = []
    if store is None:
        store = ActivationStore(directory, meta, create=False)
    elif verify:
        bad = {(int(r["start"]), int(r["stop"])) for r in store.verify()}
        corrupt = [k for k, rng in enumerate(ranges) if rng in bad]
    todo_local = [k for k, (a, b) in enumerate(ranges) if k in corrupt or not store.has(a, b)]
    todo: list[int] = topo.broadcast(todo_local) if topo.world_size > 1 else todo_local
    # Tokenise a strided share of the shards to learn their costs, then balance by tokens.
    encoded: dict[int, list[list[int]]] = {}

    def encode(k: int) -> list[list[int]]:
        if k not in encoded:
            a, b = ranges[k]
            encoded[k] = encode_conversations(
                tokenizer, conversations[a:b], max_tokens=cfg.max_tokens
            )
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
    for k in tqdm(mine, desc=desc, disable=not cfg.progress, unit="shard"):
        chunk = encode(k)
        t0 = time.perf_counter()
        block = _pool_batches(
            model, chunk, lays, batch_size=cfg.batch_size, pad_id=pad, progress=False, desc="batch"
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
        shards_corrupt=len(corrupt),
    )


def extract_to_store(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    conversations: Sequence[Conversation],
    directory: str | os.PathLike[str],
    config: ExtractionConfig,
    *,
    topology: Topology | None = None,
) -> tuple[NDArray[np.floating[Any]], float | None]:
    """:func:`extract_sharded`, then the whole store read back (every shard's sha256 checked).

    Returns the array ``(n, len(layers), hidden)`` (``config.dtype``) and the tokens/second of
    the shards computed in this call by this rank (``None`` when everything was already stored).
    """
    run = extract_sharded(model, tokenizer, conversations, directory, config, topology=topology)
    return ActivationStore(directory, run.meta, create=False).load(), run.tokens_per_second
