"""Prefix pooling: every context from one pass equals a pass over the truncated input."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from _probes_fixtures import TEXTS, tiny_model, tiny_tokenizer  # noqa: E402

from probes.extract import encode_conversations, pool_token_ids  # noqa: E402
from probes.prefix_pool import POOLINGS, pool_prefixes  # noqa: E402

ARCHS = ["llama", "gpt2"]
LAYERS = (0, 2, 3)


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.mark.parametrize("arch", ARCHS)
def test_each_context_equals_the_truncated_pass(arch, tok):
    model = tiny_model(arch, len(tok))
    ids = encode_conversations(tok, TEXTS)
    lengths = [len(t) for t in ids]
    contexts = (2, 5, max(lengths))
    got = pool_prefixes(model, ids, layers=LAYERS, contexts=contexts, pad_id=0, batch_size=3)
    assert got.shape == (len(ids), len(contexts), len(POOLINGS), len(LAYERS), 32)
    for j, c in enumerate(contexts):
        mean_c = pool_token_ids(model, [t[:c] for t in ids], layers=LAYERS, batch_size=1)
        np.testing.assert_allclose(got[:, j, POOLINGS.index("mean")], mean_c, atol=2e-5)
        # The last token's activation: c·mean(first c) − (c−1)·mean(first c−1).
        for i, t in enumerate(ids):
            n = min(c, len(t))
            full = pool_token_ids(model, [t[:n]], layers=LAYERS)[0] * n
            rest = pool_token_ids(model, [t[: n - 1]], layers=LAYERS)[0] * (n - 1) if n > 1 else 0
            np.testing.assert_allclose(got[i, j, POOLINGS.index("last")], full - rest, atol=2e-4)


def test_batching_does_not_change_the_result(tok):
    model = tiny_model("llama", len(tok))
    ids = encode_conversations(tok, TEXTS)
    one = pool_prefixes(model, ids, layers=LAYERS, contexts=(3, 8), batch_size=1)
    many = pool_prefixes(model, ids, layers=LAYERS, contexts=(3, 8), batch_size=4)
    np.testing.assert_allclose(one, many, atol=2e-5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"contexts": ()}, "contexts: must not be empty"),
        ({"contexts": (8, 4)}, "contexts: expected increasing"),
        ({"contexts": (0, 4)}, "contexts: expected increasing"),
        ({"contexts": (4, 4)}, "contexts: expected increasing"),
        ({"contexts": (4,), "batch_size": 0}, "batch_size"),
        ({"contexts": (4,), "layers": (9,)}, "layers"),
    ],
)
def test_bad_arguments(tok, kwargs, match):
    model = tiny_model("llama", len(tok))
    args = {"layers": LAYERS, **kwargs}
    with pytest.raises(ValueError, match=match):
        pool_prefixes(model, [[5, 6, 7]], **args)


def test_empty_input_is_refused(tok):
    model = tiny_model("llama", len(tok))
    with pytest.raises(ValueError, match=r"token_ids\[1\]: empty"):
        pool_prefixes(model, [[5, 6], []], layers=LAYERS, contexts=(4,))
