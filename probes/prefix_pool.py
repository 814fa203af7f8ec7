"""Several contexts and poolings from one forward pass: choosing how much of a conversation to read.

A decoder is causal, so the residual stream at position ``i`` does not depend on the tokens after
``i``. One pass over the first ``max(contexts)`` tokens therefore yields, exactly, the activations
that passes truncated at every shorter context ``c`` would give. :func:`pool_prefixes` pools each
of them two ways (the activation definition is :mod:`probes.extract`'s: the output of block ``L``'s
input norm):

* ``"mean"``: the mean over the first ``min(c, length)`` tokens (the CTD paper's §5.1 pooling);
* ``"last"``: the activation at the last of those tokens.

The artifact builder uses this to choose the layer, the pooling and the context on the dev split
from one extraction (:mod:`probes.artifact`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from numpy.typing import NDArray
from transformers import PreTrainedModel

from .extract import _check_layers, hooked_batches

__all__ = ["POOLINGS", "pool_prefixes"]

POOLINGS = ("mean", "last")


def _check_contexts(contexts: Sequence[int]) -> tuple[int, ...]:
    out = tuple(int(c) for c in contexts)
    if not out:
        raise ValueError("contexts: must not be empty")
    if any(c < 1 for c in out) or list(out) != sorted(set(out)):
        raise ValueError(f"contexts: expected increasing positive token counts, got {out}")
    return out


def pool_prefixes(
    model: PreTrainedModel,
    token_ids: Sequence[Sequence[int]],
    *,
    layers: Sequence[int],
    contexts: Sequence[int],
    pad_id: int = 0,
    batch_size: int = 8,
    progress: bool = False,
) -> NDArray[np.float32]:
    """Pooled activations ``(n, len(contexts), len(POOLINGS), len(layers), hidden)``, float32.

    ``token_ids`` are the tokenised inputs (e.g. :func:`probes.extract.encode_conversations`);
    each is read up to ``max(contexts)`` tokens. Entry ``[i, j, k, l]`` pools input ``i``'s first
    ``contexts[j]`` tokens with ``POOLINGS[k]`` at layer ``layers[l]``; an input shorter than a
    context is pooled whole. Equal, up to float rounding, to :func:`probes.extract.pool_token_ids`
    on the inputs truncated at ``contexts[j]`` (tested).
    """
    lays = _check_layers(model, layers)
    ctxs = _check_contexts(contexts)
    if batch_size < 1:
        raise ValueError(f"batch_size: must be positive, got {batch_size!r}")
    seqs = [list(s)[: ctxs[-1]] for s in token_ids]
    for i, seq in enumerate(seqs):
        if not seq:
            raise ValueError(f"token_ids[{i}]: empty")
    hidden = int(model.config.hidden_size)
    out = np.zeros((len(seqs), len(ctxs), len(POOLINGS), len(lays), hidden), dtype=np.float32)

    def pool(hidden_states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hs = hidden_states.float()
        lengths = mask.sum(dim=1)  # (batch,)
        rows = torch.arange(hs.shape[0], device=hs.device)
        # A running sum gives every prefix mean from one cumulative pass.
        csum = hs.cumsum(dim=1)
        pooled = []
        for c in ctxs:
            n_c = torch.clamp(lengths, max=c)  # tokens read at context c
            last = hs[rows, n_c - 1]
            mean = csum[rows, n_c - 1] / n_c.unsqueeze(-1).to(hs.dtype)
            pooled.append(torch.stack([mean, last], dim=1))
        return torch.stack(pooled, dim=1)  # (batch, contexts, poolings, hidden)

    for batch, blocks in hooked_batches(
        model,
        seqs,
        lays,
        pool,
        batch_size=batch_size,
        pad_id=pad_id,
        progress=progress,
        desc="prefixes",
    ):
        for k, block in enumerate(blocks):
            out[batch, :, :, k, :] = block
    return out
