"""Likelihood-continuation expert: the batched shared-prefix (KV cache) scorer equals two full
passes per conversation (the naive reference), for every batch size, in input order."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch
from _probes_fixtures import TEXTS, tiny_model, tiny_tokenizer
from transformers import MistralConfig, MistralForCausalLM

from probes.experts import (
    LIKELIHOOD_PROMPTS,
    ContinuationPrompt,
    format_conversation,
    likelihood_continuation,
    naive_likelihood_continuation,
)
from probes.models import GEMMA_CHAT_TEMPLATE

PROMPT = ContinuationPrompt(
    system_prompt="analyze if the conversation is high stakes",
    high_completion="The given conversation is high stakes .",
    low_completion="The given conversation is low stakes .",
)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("share", [True, False])
def test_shared_prefix_equals_two_full_passes(arch, share):
    tok = tiny_tokenizer()
    model = tiny_model(arch, len(tok))
    fast = likelihood_continuation(
        model, tok, TEXTS, prompt=PROMPT, share_system_prompt=share, progress=False
    )
    slow = naive_likelihood_continuation(model, tok, TEXTS, prompt=PROMPT)
    np.testing.assert_allclose(fast.ll_high, slow.ll_high, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fast.ll_low, slow.ll_low, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fast.p_high, slow.p_high, atol=1e-6)
    assert np.all((fast.p_high > 0) & (fast.p_high < 1))
    expected = 1 / (1 + np.exp(fast.ll_low - fast.ll_high))
    np.testing.assert_allclose(fast.p_high, expected, atol=1e-12)
    assert np.all(fast.n_tokens > 0)


def test_truncation_and_formatting():
    tok = tiny_tokenizer()
    model = tiny_model("llama", len(tok))
    assert format_conversation("plain") == "plain"
    text = format_conversation(TEXTS[1])
    assert text.startswith("USER\nurgent") and "\n\nASSISTANT\n" in text
    long = "the patient needs help now " * 5
    cut = likelihood_continuation(model, tok, [long], prompt=PROMPT, max_tokens=3, progress=False)
    short = likelihood_continuation(
        model, tok, ["the patient needs"], prompt=PROMPT, progress=False
    )
    np.testing.assert_allclose(cut.ll_high, short.ll_high, rtol=1e-6)
    with pytest.raises(ValueError, match="max_tokens"):
        likelihood_continuation(model, tok, [long], prompt=PROMPT, max_tokens=0, progress=False)
    same = ContinuationPrompt(system_prompt="x", high_completion="high", low_completion="high")
    with pytest.raises(ValueError, match="differ"):
        likelihood_continuation(model, tok, ["a"], prompt=same, progress=False)


def test_reference_prompts_and_gemma_template():
    assert LIKELIHOOD_PROMPTS["default"].high_completion == "The given conversation is high-stakes."
    assert LIKELIHOOD_PROMPTS["single_word"].low_completion == "low"
    tok = tiny_tokenizer()
    tok.chat_template = GEMMA_CHAT_TEMPLATE
    messages = [
        {"role": "system", "content": "SYS"},
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "high"},
    ]
    text = tok.apply_chat_template(messages, tokenize=False)
    assert text == (
        "<bos><start_of_turn>user\nSYS\n\nhello<end_of_turn>\n<start_of_turn>model\nhigh<end_of_turn>\n"
    )


# Conversations of clearly different lengths (3 to ~20 words), so batches are padded.
LENGTHS = [
    *TEXTS,
    "the patient needs help now urgent bleeding chest pain please call ambulance now the doctor",
    "cake",
]


def _close(a, b, tol=1e-5):
    np.testing.assert_allclose(a.ll_high, b.ll_high, rtol=tol, atol=tol)
    np.testing.assert_allclose(a.ll_low, b.ll_low, rtol=tol, atol=tol)
    np.testing.assert_allclose(a.p_high, b.p_high, atol=tol)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("batch_size", [1, 2, 3, len(LENGTHS) + 5])
def test_batched_equals_unbatched_and_naive(arch, batch_size):
    tok = tiny_tokenizer()
    model = tiny_model(arch, len(tok))
    naive = naive_likelihood_continuation(model, tok, LENGTHS, prompt=PROMPT)
    one = likelihood_continuation(model, tok, LENGTHS, prompt=PROMPT, batch_size=1, progress=False)
    got = likelihood_continuation(
        model, tok, LENGTHS, prompt=PROMPT, batch_size=batch_size, progress=False
    )
    _close(got, one)
    _close(got, naive)
    np.testing.assert_array_equal(got.n_tokens, one.n_tokens)
    assert np.all(np.isfinite(got.ll_high)) and np.all(got.n_tokens > 0)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_batched_without_shared_system_prompt(arch):
    # No base cache: left padding starts at position 0 (fully padded leading rows).
    tok = tiny_tokenizer()
    model = tiny_model(arch, len(tok))
    naive = naive_likelihood_continuation(model, tok, LENGTHS, prompt=PROMPT)
    got = likelihood_continuation(
        model, tok, LENGTHS, prompt=PROMPT, share_system_prompt=False, batch_size=4, progress=False
    )
    _close(got, naive)


def test_results_in_input_order():
    tok = tiny_tokenizer()
    model = tiny_model("llama", len(tok))
    perm = [4, 8, 0, 6, 2, 7, 1, 5, 3]
    got = likelihood_continuation(model, tok, LENGTHS, prompt=PROMPT, batch_size=3, progress=False)
    shuffled = likelihood_continuation(
        model, tok, [LENGTHS[i] for i in perm], prompt=PROMPT, batch_size=3, progress=False
    )
    np.testing.assert_allclose(shuffled.ll_high, got.ll_high[perm], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(shuffled.ll_low, got.ll_low[perm], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(shuffled.n_tokens, got.n_tokens[perm])


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_batched_truncation(arch):
    tok = tiny_tokenizer()
    model = tiny_model(arch, len(tok))
    # Mixed: longer than the cut (truncated to 4 tokens) and shorter (left as they are).
    texts = ["the patient needs help now " * 6, "a", "what is the weather today please", "cake"]
    cut = likelihood_continuation(
        model, tok, texts, prompt=PROMPT, max_tokens=4, batch_size=3, progress=False
    )
    naive = naive_likelihood_continuation(model, tok, texts, prompt=PROMPT, max_tokens=4)
    _close(cut, naive)
    short = ["the patient needs help", "a", "what is the weather", "cake"]
    ref = likelihood_continuation(model, tok, short, prompt=PROMPT, batch_size=1, progress=False)
    _close(cut, ref)


def _sliding_mistral(vocab_size: int, window: int) -> MistralForCausalLM:
    torch.manual_seed(1)
    cfg = MistralConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        sliding_window=window,
    )
    return MistralForCausalLM(cfg).eval()


def test_sliding_window_models_stay_exact():
    # Padding would shift a sliding window: batches longer than the window are scored row by row.
    tok = tiny_tokenizer()
    model = _sliding_mistral(len(tok), window=12)
    naive = naive_likelihood_continuation(model, tok, LENGTHS, prompt=PROMPT)
    got = likelihood_continuation(model, tok, LENGTHS, prompt=PROMPT, batch_size=4, progress=False)
    _close(got, naive)


def test_batch_size_is_validated():
    tok = tiny_tokenizer()
    model = tiny_model("llama", len(tok))
    bad: Any
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match=r"^batch_size"):
            likelihood_continuation(
                model, tok, ["a"], prompt=PROMPT, batch_size=bad, progress=False
            )
