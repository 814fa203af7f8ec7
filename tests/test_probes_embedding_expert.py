"""The strong expert: chunked sentence embeddings and the cross-fitted classifier."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from transformers import BertConfig, BertModel  # noqa: E402

from probes.embedding_expert import crossfit_classifier, embed_conversations  # noqa: E402
from probes.experts import format_conversation  # noqa: E402


class _CharTokenizer:
    """One word piece per character (ids 10 + ord % 90): enough to test the chunking."""

    cls_token_id, sep_token_id, pad_token_id = 1, 2, 0

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        assert not add_special_tokens
        return [10 + ord(ch) % 90 for ch in text]


def _encoder() -> Any:
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=100,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    return BertModel(cfg).eval()


def _chunk_embedding(model: Any, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        hs = model(input_ids=torch.tensor([ids])).last_hidden_state[0]
    v = hs.mean(dim=0)
    return (v / v.norm()).numpy()


def test_embedding_is_the_mean_of_unit_chunk_embeddings():
    model, tok = _encoder(), _CharTokenizer()
    convs: list[str | list[dict[str, str]]] = [
        "short text",
        "x" * 45,
        [{"role": "user", "content": "a" * 30}],
    ]
    res = embed_conversations(model, tok, convs, chunk_tokens=12, max_chunks=3, batch_size=2)
    for i, conv in enumerate(convs):
        ids = tok.encode(format_conversation(conv))
        pieces = [ids[a : a + 10] for a in range(0, len(ids), 10)][:3]
        want = np.mean([_chunk_embedding(model, [1, *p, 2]) for p in pieces], axis=0)
        np.testing.assert_allclose(res.embeddings[i], want, atol=1e-5)
        assert res.n_chunks[i] == len(pieces)
        assert res.n_tokens[i] == sum(len(p) + 2 for p in pieces)
    assert res.n_chunks.tolist() == [1, 3, 3]  # the 45- and 38-character texts are cut at 3 chunks


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"chunk_tokens": 4}, "chunk_tokens"),
        ({"max_chunks": 0}, "max_chunks"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_embedding_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        embed_conversations(_encoder(), _CharTokenizer(), ["text"], **kwargs)


def _problem(seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    n_fixed, n_crossed, n_scored, dim = 60, 40, 30, 5
    n = n_fixed + n_crossed + n_scored
    X = rng.normal(size=(n, dim))
    y = (X[:, 0] + rng.normal(scale=1.0, size=n) > 0).astype(np.int64)
    role = np.repeat(np.array([0, 1, 2]), [n_fixed, n_crossed, n_scored])
    strata = np.where(rng.random(n) < 0.5, "a", "b")
    return {
        "X": X,
        "y": y,
        "fixed": role == 0,
        "crossed": role == 1,
        "scored": role == 2,
        "strata": np.char.add(strata, y.astype(str)),
    }


def test_a_crossed_row_is_scored_without_its_own_label():
    prob = _problem()
    base = crossfit_classifier(**prob, Cs=(1.0,))
    for row in np.flatnonzero(prob["crossed"])[:5]:
        flipped = {**prob, "y": prob["y"].copy()}
        flipped["y"][row] ^= 1
        again = crossfit_classifier(**flipped, Cs=(1.0,))
        assert again.scores[row] == base.scores[row]  # exact: its label was never in its fit
        assert not np.array_equal(again.scores, base.scores)  # but it is in the others' fits


def test_in_sample_scores_would_fail_the_same_check():
    """The invalid twin: scoring dev rows with a model fitted on them leaks their labels."""
    from probes.linear import fit_logistic

    prob = _problem()
    fit_rows = prob["fixed"] | prob["crossed"]
    row = int(np.flatnonzero(prob["crossed"])[0])

    def in_sample(y: np.ndarray) -> float:
        model = fit_logistic(prob["X"][fit_rows], y[fit_rows], C=1.0)
        return float(model.predict_proba(prob["X"][row : row + 1])[0])

    flipped = prob["y"].copy()
    flipped[row] ^= 1
    assert in_sample(flipped) != in_sample(prob["y"])


def test_the_scored_pool_is_never_fitted_on():
    prob = _problem()
    base = crossfit_classifier(**prob)
    other = {**prob, "y": prob["y"].copy()}
    other["y"][prob["scored"]] = 1 - other["y"][prob["scored"]]
    again = crossfit_classifier(**other)
    np.testing.assert_array_equal(again.scores, base.scores)
    assert again.C == base.C
    assert np.isnan(base.scores[prob["fixed"]]).all()
    assert np.isfinite(base.scores[prob["crossed"] | prob["scored"]]).all()


def test_C_has_the_lowest_out_of_fold_log_loss():
    res = crossfit_classifier(**_problem(), Cs=(0.001, 0.1, 10.0))
    assert set(res.cv_log_loss) == {0.001, 0.1, 10.0}
    assert res.cv_log_loss[res.C] == min(res.cv_log_loss.values())


def test_folds_are_stratified():
    from probes.embedding_expert import _folds

    strata = np.array(["a"] * 10 + ["b"] * 7)
    fold = _folds(strata, 5, seed=3)
    for s in ("a", "b"):
        counts = np.bincount(fold[strata == s], minlength=5)
        assert counts.max() - counts.min() <= 1


def test_crossfit_bad_arguments():
    prob = _problem()
    with pytest.raises(ValueError, match="disjoint"):
        crossfit_classifier(**{**prob, "crossed": prob["crossed"] | prob["fixed"]})
    with pytest.raises(ValueError, match="folds"):
        crossfit_classifier(**prob, folds=1)
