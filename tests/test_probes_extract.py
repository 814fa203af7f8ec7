"""Activation extraction on tiny random Llama / GPT-2 models (no download)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from _probes_fixtures import TEXTS, tiny_model, tiny_tokenizer  # noqa: E402

from probes.extract import (  # noqa: E402
    _as_messages,
    encode_conversations,
    extract_activations,
    residual_norm_modules,
)

ARCHS = ["llama", "gpt2"]


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def _manual(model, ids, layer):
    """Input norm of block `layer` applied to hidden_states[layer] of a full forward."""
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), output_hidden_states=True)
        hs = out.hidden_states[layer]
        return residual_norm_modules(model)[layer](hs)[0]


@pytest.mark.parametrize("arch", ARCHS)
def test_norm_module_per_architecture(arch, tok):
    model = tiny_model(arch, len(tok))
    mods = residual_norm_modules(model)
    assert len(mods) == 4
    blocks: Any = model.base_model.layers if arch == "llama" else model.base_model.h
    expected = blocks[2].input_layernorm if arch == "llama" else blocks[2].ln_1
    assert mods[2] is expected


@pytest.mark.parametrize("arch", ARCHS)
def test_hook_equals_hidden_states_after_norm(arch, tok):
    model = tiny_model(arch, len(tok))
    res = extract_activations(model, tok, TEXTS, layers=[1, 3], progress=False, batch_size=3)
    assert res.activations.shape == (len(TEXTS), 2, 32)
    for i, conv in enumerate(TEXTS):
        full = tok.apply_chat_template(_as_messages(conv), tokenize=True)["input_ids"]
        ids = list(full)[1:]  # BOS dropped
        for k, layer in enumerate([1, 3]):
            manual = _manual(model, ids, layer).mean(0).numpy()
            np.testing.assert_allclose(res.activations[i, k], manual, rtol=1e-4, atol=1e-5)
        # the raw residual (before the norm) is different: the hook point matters
        with torch.no_grad():
            raw = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[1]
        assert not np.allclose(res.activations[i, 0], raw[0].mean(0).numpy(), atol=1e-3)


@pytest.mark.parametrize("arch", ARCHS)
def test_padding_and_batching_invariance(arch, tok):
    model = tiny_model(arch, len(tok))
    batched = extract_activations(
        model, tok, TEXTS, layers=[0, 2], batch_size=len(TEXTS), progress=False
    )
    for i, conv in enumerate(TEXTS):
        alone = extract_activations(model, tok, [conv], layers=[0, 2], batch_size=1, progress=False)
        np.testing.assert_allclose(
            batched.activations[i], alone.activations[0], rtol=1e-4, atol=1e-5
        )


def test_bos_dropped(tok):
    ids = encode_conversations(tok, TEXTS)
    full = encode_conversations(tok, TEXTS, drop_first=False)
    for a, b in zip(ids, full, strict=True):
        assert b[0] == tok.bos_token_id
        assert a == b[1:]
        assert tok.bos_token_id not in a


@pytest.mark.parametrize("arch", ARCHS)
def test_truncation_keeps_layer_output(arch, tok):
    model = tiny_model(arch, len(tok))
    conv = TEXTS[5]
    ids = encode_conversations(tok, [conv])[0]
    assert len(ids) > 6
    res = extract_activations(model, tok, [conv], layers=[2], max_tokens=6, progress=False)
    assert res.n_tokens.tolist() == [6]
    manual = _manual(model, ids, 2)[:6].mean(0).numpy()  # first 6 positions of the full forward
    np.testing.assert_allclose(res.activations[0, 0], manual, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_model_stops_after_deepest_layer(arch, tok):
    model = tiny_model(arch, len(tok))
    calls: list[int] = []
    blocks: Any = model.base_model.layers if arch == "llama" else model.base_model.h
    handles = [
        b.register_forward_hook(lambda *_a, i=i: calls.append(i)) for i, b in enumerate(blocks)
    ]
    try:
        extract_activations(model, tok, TEXTS[:2], layers=[1], progress=False)
    finally:
        for h in handles:
            h.remove()
    assert calls and max(calls) == 0  # block 1 is entered (its norm) but never completes


def test_bad_arguments(tok):
    model = tiny_model("llama", len(tok))
    with pytest.raises(ValueError, match="layers"):
        extract_activations(model, tok, TEXTS, layers=[4], progress=False)
    with pytest.raises(ValueError, match="layers"):
        extract_activations(model, tok, TEXTS, layers=[], progress=False)
    with pytest.raises(ValueError, match="max_tokens"):
        extract_activations(model, tok, TEXTS, layers=[1], max_tokens=0, progress=False)
