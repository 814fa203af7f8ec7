"""A latent monitor on a running model: probe scores from the model's own forward pass.

CTD's premise (CTD paper §1: latent probes give safety scores "at near-zero inference cost";
§7: the DV probe "reuses the same activations as the safety probe", and the calibrated threshold
allows streaming deployment): the cascade's first stage costs no extra model call.
:class:`LatentMonitor` makes that literal. During the model's forward over a batch of requests —
a plain forward, or the prefill of generation — a forward hook on block ``L``'s input norm
(:func:`probes.extract.residual_norm_modules`, the same layer indexing as extraction) pools the
activation as the probes' :class:`~probes.probe_io.FeatureSpec` says (mean or last token over the
first ``context`` tokens of the chat-templated input, BOS dropped: the inputs of
:func:`probes.extract.encode_conversations`). The safety probe and the DV probe score the pooled
vector, and a :class:`ctd_stats.Delegator` decides, request by request in stream order, whether
to call the expert; its budget monitor watches the delegation rate (anytime-valid alarm).

No second pass: the decision is known when the forward over the prompt returns, before the first
new token; generation then continues from that pass's key/value cache (the prompt is not
recomputed). Batches are padded left or right, with per-row pooling weights and position ids from
the attention mask, so a row's scores do not depend on its batch (up to float rounding).

Because the model is causal, the activations at the first ``context`` positions do not depend
on what follows them: the request may be longer than the context, and the generation prompt
(``add_generation_prompt=True``) appended after the conversation changes nothing that is pooled.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray
from transformers import PreTrainedModel, StoppingCriteria, StoppingCriteriaList
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from ctd_stats import Delegator, DelegatorState

from .data import Message
from .extract import encode_conversations, residual_norm_modules
from .models import LoadedModel
from .probe_io import LatentProbes, check_model

__all__ = ["EncodedBatch", "LatentMonitor", "LiveDecision", "LiveResult", "Request"]

Request = Sequence[Message] | str
Padding = Literal["left", "right"]


@dataclass(frozen=True)
class EncodedBatch:
    """Padded model inputs of a batch of requests and where each row's pooled tokens lie.

    Row ``i`` holds ``lengths[i]`` real tokens (the conversation, then the generation prompt
    when generating) starting at column ``offsets[i]``; its first ``n_pooled[i]`` real tokens
    are pooled. ``position_ids`` count real tokens only, as ``generate`` does.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    offsets: torch.Tensor
    lengths: torch.Tensor
    n_pooled: torch.Tensor
    n_tokens: tuple[int, ...]  # conversation tokens per row (the generation prompt excluded)

    def model_inputs(self) -> dict[str, torch.Tensor]:
        return {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "position_ids": self.position_ids,
        }


@dataclass(frozen=True)
class LiveDecision:
    """One request's outcome: scores, the delegation decision and the budget monitor.

    ``t`` is the request's 0-based index in the stream; ``statistic`` the budget monitor's log
    e-value after it (0 without a monitor); ``alarm`` latches from the first alarm, at 0-based
    stream step ``alarm_step``. ``generated`` holds the new token ids (up to and including the
    first end-of-sequence token) and ``text`` their decoding, when generating.
    """

    t: int
    probe: float
    dv: float
    delegated: bool
    statistic: float
    alarm: bool
    alarm_step: int | None
    n_tokens: int
    generated: tuple[int, ...] | None = None
    text: str | None = None

    def __repr__(self) -> str:
        gen = "" if self.generated is None else f", {len(self.generated)} new tokens"
        return (
            f"LiveDecision(t={self.t}, probe={self.probe:.4g}, dv={self.dv:.4g}, "
            f"delegated={self.delegated}, statistic={self.statistic:.4g}, "
            f"alarm_step={self.alarm_step}{gen})"
        )


@dataclass(frozen=True)
class LiveResult:
    """What :meth:`LatentMonitor.decide` did for a batch: decisions, features, the new state."""

    decisions: tuple[LiveDecision, ...]
    features: NDArray[np.float32]  # (n, hidden) pooled activations
    state: DelegatorState

    def __repr__(self) -> str:
        k = sum(d.delegated for d in self.decisions)
        return f"LiveResult({k} of {len(self.decisions)} delegated, state={self.state!r})"


def _pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    if tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    return int(tokenizer.eos_token_id) if tokenizer.eos_token_id is not None else 0


def _messages(request: Request) -> list[dict[str, str]]:
    if isinstance(request, str):
        return [{"role": "user", "content": request}]
    return [dict(m) for m in request]


class LatentMonitor:
    """Score and decide every request from the activations of the model's own forward pass.

    Parameters
    ----------
    model
        The monitored model, from :func:`probes.models.load_model` (its ``source_hash`` must be
        the probes' ``model_hash``).
    probes
        The fitted safety and DV probes with their feature specification.
    delegator
        The calibrated :class:`ctd_stats.Delegator`: it is fed the DV score (CTD, budget-only
        LTT: ``calibration.signal == "dv"``) or the safety probe's score (``"uncertainty"``).
    padding
        ``"right"`` (default) or ``"left"`` padding of a batch; generation needs ``"left"``
        when the rows of a batch differ in length.
    max_tokens
        Cap on the conversation tokens the model reads (``None``: all of them).

    Raises
    ------
    ValueError
        ``model: ...`` when the model is not the one the probes were fitted on (sha256), lacks
        their layer, or has another width; ``padding: ...`` / ``max_tokens: ...`` for bad
        options.

    Notes
    -----
    CTD paper §4.1 (the DV probe on the safety probe's activations; delegate iff the signal
    exceeds the calibrated threshold τ) and §4.2 (the calibration's guarantee, P(rate ≤ α) ≥
    1 − δ, inherited by each decision on an exchangeable stream). The monitor adds no model
    call: one forward per batch, the one the model runs anyway.

    Examples
    --------
    >>> monitor = LatentMonitor(loaded, probes, Delegator(calibration))  # doctest: +SKIP
    >>> res = monitor.decide(monitor.init(), ["is my chest pain urgent?"])  # doctest: +SKIP
    >>> res.decisions[0].delegated  # doctest: +SKIP
    """

    def __init__(
        self,
        model: LoadedModel,
        probes: LatentProbes,
        delegator: Delegator,
        *,
        padding: Padding = "right",
        max_tokens: int | None = None,
    ) -> None:
        if not isinstance(probes, LatentProbes):
            raise TypeError(f"probes: expected LatentProbes, got {type(probes).__name__}")
        if not isinstance(delegator, Delegator):
            raise TypeError(f"delegator: expected a Delegator, got {type(delegator).__name__}")
        if padding not in ("left", "right"):
            raise ValueError(f"padding: expected 'left' or 'right', got {padding!r}")
        if max_tokens is not None and (
            isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
        ):
            raise ValueError(f"max_tokens: must be a positive integer or None, got {max_tokens!r}")
        self.model: PreTrainedModel = model.model
        self.tokenizer: PreTrainedTokenizerBase = model.tokenizer
        mods = residual_norm_modules(self.model)
        check_model(
            probes,
            model_hash=model.source_hash,
            n_blocks=len(mods),
            hidden_size=int(self.model.config.hidden_size),
        )
        self.probes = probes
        self.delegator = delegator
        self.padding: Padding = padding
        self.max_tokens = max_tokens
        self.pad_id = _pad_id(self.tokenizer)
        emb: Any = self.model.get_input_embeddings()
        self.device: torch.device = emb.weight.device
        self._module = mods[probes.spec.layer]
        self._uses_probe = delegator.calibration.signal == "uncertainty"
        params = inspect.signature(self.model.forward).parameters
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"

    def __repr__(self) -> str:
        return (
            f"LatentMonitor({type(self.model).__name__}, {self.probes!r}, {self.delegator!r}, "
            f"padding={self.padding!r})"
        )

    def init(self) -> DelegatorState:
        """The delegator's state before any request."""
        return self.delegator.init()

    # ------------------------------------------------------------------ inputs
    def _generation_suffix(self, request: Request, i: int) -> list[int]:
        """Tokens the chat template appends to prompt a reply (``add_generation_prompt``)."""
        msgs = _messages(request)
        plain: Any = self.tokenizer.apply_chat_template(msgs, tokenize=True)
        full: Any = self.tokenizer.apply_chat_template(
            msgs, add_generation_prompt=True, tokenize=True
        )
        # a BatchEncoding (transformers >= 5) or a plain list of ids
        plain_ids = list(plain["input_ids"] if isinstance(plain, Mapping) else plain)
        full_ids = list(full["input_ids"] if isinstance(full, Mapping) else full)
        if full_ids[: len(plain_ids)] != plain_ids:
            raise ValueError(
                f"requests[{i}]: the chat template's generation prompt does not extend the "
                "conversation's tokens, so the pooled tokens would change"
            )
        return [int(t) for t in full_ids[len(plain_ids) :]]

    def encode(
        self, requests: Sequence[Request], *, generation_prompt: bool = False
    ) -> EncodedBatch:
        """Tokenise and pad a batch (see :class:`EncodedBatch`)."""
        if len(requests) == 0:
            raise ValueError("requests: empty batch")
        convs = encode_conversations(self.tokenizer, requests, max_tokens=self.max_tokens)
        rows = [list(c) for c in convs]
        if generation_prompt:
            rows = [
                r + self._generation_suffix(q, i)
                for i, (r, q) in enumerate(zip(rows, requests, strict=True))
            ]
        lengths = [len(r) for r in rows]
        width = max(lengths)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        offsets = []
        for i, r in enumerate(rows):
            a = width - len(r) if self.padding == "left" else 0
            ids[i, a : a + len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, a : a + len(r)] = 1
            offsets.append(a)
        context = self.probes.spec.context
        pooled = [len(c) if context is None else min(len(c), context) for c in convs]
        dev = self.device
        return EncodedBatch(
            input_ids=ids.to(dev),
            attention_mask=mask.to(dev),
            position_ids=(mask.cumsum(dim=1) - 1).clamp_min(0).to(dev),
            offsets=torch.tensor(offsets, dtype=torch.long, device=dev),
            lengths=torch.tensor(lengths, dtype=torch.long, device=dev),
            n_pooled=torch.tensor(pooled, dtype=torch.long, device=dev),
            n_tokens=tuple(len(c) for c in convs),
        )

    def pool(self, batch: EncodedBatch, hidden: torch.Tensor) -> torch.Tensor:
        """Pool the layer's hidden states ``hidden`` (batch, width, d) of ``batch`` as the
        artifact does: (batch, d) float32, the mean over the pooled tokens or the last one.

        This is all the monitor adds to the model's forward (its hook calls it), besides the
        two probes and one delegator update.
        """
        cols = torch.arange(hidden.shape[1], device=batch.offsets.device).unsqueeze(0)
        start = batch.offsets.unsqueeze(1)
        stop = start + batch.n_pooled.unsqueeze(1)
        if self.probes.spec.pooling == "mean":
            inside = ((cols >= start) & (cols < stop)).to(torch.float32)
            weights = inside / batch.n_pooled.unsqueeze(1).to(torch.float32)
        else:
            weights = (cols == stop - 1).to(torch.float32)
        return torch.bmm(weights.unsqueeze(1), hidden.float()).squeeze(1)

    # ------------------------------------------------------------------ the pass
    def forward(
        self, batch: EncodedBatch, *, use_cache: bool = False, **kwargs: Any
    ) -> tuple[NDArray[np.float32], Any]:
        """The model's forward over ``batch`` with the pooling hook: (features, model output)."""
        captured: list[torch.Tensor] = []

        def hook(_mod: torch.nn.Module, _inp: Any, output: Any) -> None:
            hs = output[0] if isinstance(output, tuple) else output
            captured.append(self.pool(batch, hs))

        handle = self._module.register_forward_hook(hook)
        try:
            with torch.inference_mode():
                out = self.model(**batch.model_inputs(), use_cache=use_cache, **kwargs)
        finally:
            handle.remove()
        if len(captured) != 1:
            raise RuntimeError(f"the layer hook ran {len(captured)} times in one forward")
        return captured[0].cpu().numpy(), out

    def decide(
        self,
        state: DelegatorState,
        requests: Sequence[Request],
        *,
        generate: int = 0,
        on_decision: Callable[[LiveDecision], None] | None = None,
    ) -> LiveResult:
        """One forward over ``requests``; their scores and decisions in order; then generation.

        ``state`` is the delegator's state before the batch (:meth:`init` at the start of a
        stream); the result carries the state after it. With ``generate=N`` the model then
        writes up to ``N`` new tokens per request (greedy, as ``generate(do_sample=False)``)
        continuing from the prompt's key/value cache; ``on_decision`` is called with each
        decision before generation starts (the decision does not wait for the reply).
        """
        if not isinstance(state, DelegatorState):
            raise TypeError(f"state: expected a DelegatorState, got {type(state).__name__}")
        if isinstance(generate, bool) or not isinstance(generate, int) or generate < 0:
            raise ValueError(f"generate: must be a non-negative integer, got {generate!r}")
        batch = self.encode(requests, generation_prompt=generate > 0)
        if generate and self.padding == "right" and len(set(batch.lengths.tolist())) > 1:
            raise ValueError("padding: generation from a batch of unequal rows needs 'left'")
        extra: dict[str, Any] = {"logits_to_keep": 1} if generate else {}
        feats, out = self.forward(batch, use_cache=generate > 0, **extra)
        probe = self.probes.safety_scores(feats)
        dv = self.probes.dv_scores(feats)
        decisions: list[LiveDecision] = []
        for i in range(len(requests)):
            score = probe[i] if self._uses_probe else dv[i]
            state, step = self.delegator.update(state, float(score))
            d = LiveDecision(
                t=step.t,
                probe=float(probe[i]),
                dv=float(dv[i]),
                delegated=bool(step.delegated),
                statistic=float(step.statistic),
                alarm=bool(step.alarm),
                alarm_step=step.alarm_step,
                n_tokens=batch.n_tokens[i],
            )
            if on_decision is not None:
                on_decision(d)
            decisions.append(d)
        if generate:
            new = self._continue(batch, out, generate)
            decisions = [
                _with_generation(d, g, self.tokenizer) for d, g in zip(decisions, new, strict=True)
            ]
        return LiveResult(decisions=tuple(decisions), features=feats, state=state)

    def _continue(self, batch: EncodedBatch, out: Any, n_new: int) -> list[tuple[int, ...]]:
        """Greedy continuation from the prefill's cache: ``generate`` feeds only new tokens.

        The prefill already chose each row's first new token. A row whose first token ends it
        (end of sequence) is finished, as ``generate`` would have marked it after its own
        prefill: when every row is, no decoding step runs; otherwise such rows are marked
        finished after the first step (:class:`_EndedRows`), so that the loop stops when the
        other rows do rather than when these rows emit a second end-of-sequence token. The
        kept tokens (up to the first end-of-sequence one) and the number of decoding steps are
        those of a plain greedy ``generate`` on the same prompt.
        """
        first = out.logits[:, -1, :].argmax(dim=-1, keepdim=True)
        # transformers >= 5 calls the key/value cache ``cache``, earlier ``past_key_values``
        cache = out["cache"] if "cache" in out else out["past_key_values"]
        ids = torch.cat([batch.input_ids, first], dim=1)
        eos = self._eos_ids()
        eos_ids = torch.tensor(sorted(eos), dtype=first.dtype, device=first.device)
        ended = torch.isin(first[:, 0], eos_ids)
        if n_new > 1 and not bool(ended.all()):
            mask = torch.cat([batch.attention_mask, torch.ones_like(first)], dim=1)
            with torch.inference_mode():
                ids = self.model.generate(  # type: ignore[operator]
                    input_ids=ids,
                    attention_mask=mask,
                    **{self._cache_kwarg: cache},
                    max_new_tokens=n_new - 1,
                    do_sample=False,
                    pad_token_id=self.pad_id,
                    stopping_criteria=StoppingCriteriaList([_EndedRows(ended)]),
                )
        new = ids[:, batch.input_ids.shape[1] :].tolist()
        result = []
        for row in new:
            stop = next((k + 1 for k, tok in enumerate(row) if tok in eos), len(row))
            result.append(tuple(int(t) for t in row[:stop]))
        return result

    def _eos_ids(self) -> set[int]:
        cfg: Any = getattr(self.model, "generation_config", None)
        eos: Any = getattr(cfg, "eos_token_id", None)
        if eos is None:
            eos = self.tokenizer.eos_token_id
        if eos is None:
            return set()
        return {int(e) for e in eos} if isinstance(eos, (list, tuple)) else {int(eos)}


class _EndedRows(StoppingCriteria):
    """Stopping criterion: the rows that ended before ``generate`` was called are done."""

    def __init__(self, ended: torch.Tensor) -> None:
        self.ended = ended

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        return self.ended.to(input_ids.device)


def _with_generation(
    d: LiveDecision, tokens: tuple[int, ...], tokenizer: PreTrainedTokenizerBase
) -> LiveDecision:
    text = tokenizer.decode(list(tokens), skip_special_tokens=True)
    return LiveDecision(
        t=d.t,
        probe=d.probe,
        dv=d.dv,
        delegated=d.delegated,
        statistic=d.statistic,
        alarm=d.alarm,
        alarm_step=d.alarm_step,
        n_tokens=d.n_tokens,
        generated=tokens,
        text=str(text),
    )
