"""The latent monitor on a running model (probes.live) and its probe files (probes.probe_io)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from _probes_fixtures import conversations as _conversations  # noqa: E402
from _probes_fixtures import save_tiny_llama, tiny_model, tiny_tokenizer  # noqa: E402

from ctd_stats import (  # noqa: E402
    Delegator,
    calibrate_budget_only,
    calibrate_uncertainty,
)
from probes.extract import encode_conversations, extract_activations  # noqa: E402
from probes.linear import fit_logistic, fit_ridge  # noqa: E402
from probes.live import LatentMonitor  # noqa: E402
from probes.models import LoadedModel, load_model  # noqa: E402
from probes.prefix_pool import pool_prefixes  # noqa: E402
from probes.probe_io import FeatureSpec, LatentProbes, check_model, load_probes  # noqa: E402

HASH = "ab" * 32
LAYER, CONTEXT, N_BLOCKS, HIDDEN = 2, 12, 4, 32


def _loaded(arch: str, source_hash: str = HASH) -> LoadedModel:
    tok = tiny_tokenizer()
    return LoadedModel(
        name=arch,
        model=tiny_model(arch, len(tok)),
        tokenizer=tok,
        source="memory",
        source_hash=source_hash,
        device=torch.device("cpu"),
        dtype=torch.float32,
    )


def _offline_features(lm: LoadedModel, convs: list[Any], pooling: str) -> np.ndarray:
    """What `probes extract` / the artifact build store for these inputs."""
    if pooling == "mean":
        res = extract_activations(
            lm.model, lm.tokenizer, convs, layers=[LAYER], max_tokens=CONTEXT, progress=False
        )
        return res.activations[:, 0, :]
    ids = encode_conversations(lm.tokenizer, convs)
    return pool_prefixes(lm.model, ids, layers=[LAYER], contexts=[CONTEXT], pad_id=0)[:, 0, 1, 0]


def _fitted(lm: LoadedModel, convs: list[Any], pooling: Any) -> tuple[LatentProbes, np.ndarray]:
    """Probes fitted offline on the offline features, and those features."""
    X = _offline_features(lm, convs, pooling).astype(np.float64)
    rng = np.random.default_rng(1)
    y = np.arange(len(convs)) % 2
    v = rng.normal(size=len(convs))
    spec = FeatureSpec(
        model_hash=lm.source_hash,
        n_blocks=N_BLOCKS,
        hidden_size=HIDDEN,
        layer=LAYER,
        pooling=pooling,
        context=CONTEXT,
    )
    probes = LatentProbes.from_fitted(
        spec, fit_logistic(X, y, C=10.0), fit_ridge(X, v, penalty=0.1)
    )
    return probes, X


def conversations(n: int) -> list[Any]:
    return list(_conversations(n))


def _stream(delegator: Delegator, scores: np.ndarray) -> tuple[list[bool], list[float], Any]:
    """The offline reference: the delegator's protocol, one score at a time."""
    state, delegated, statistic = delegator.init(), [], []
    for s in scores:
        state, step = delegator.update(state, float(s))
        delegated.append(bool(step.delegated))
        statistic.append(step.statistic)
    return delegated, statistic, state


def _dv_calibration(seed: int = 0) -> Any:
    # a threshold near the middle of the DV scores, so that both decisions occur
    return calibrate_budget_only(np.random.default_rng(seed).normal(size=400), alpha=0.5)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("pooling", ["mean", "last"])
@pytest.mark.parametrize("padding", ["left", "right"])
def test_scores_equal_the_offline_pipeline(arch: str, pooling: str, padding: Any) -> None:
    lm = _loaded(arch)
    convs = conversations(11)
    probes, X = _fitted(lm, convs, pooling)
    safety = fit_logistic(X, np.arange(len(convs)) % 2, C=10.0)
    offline_p = safety.predict_proba(X)
    offline_d = probes.dv_scores(X)
    np.testing.assert_allclose(probes.safety_scores(X), offline_p, rtol=0, atol=1e-12)
    delegator = Delegator(_dv_calibration())
    monitor = LatentMonitor(lm, probes, delegator, padding=padding)
    off_delegated, off_statistic, off_state = _stream(delegator, offline_d)

    batched = monitor.decide(monitor.init(), convs)
    state, one = monitor.init(), list[Any]()
    for conv in convs:  # one request at a time, the state carried over
        res = monitor.decide(state, [conv])
        state = res.state
        one.extend(res.decisions)
    for decisions, feats in ((batched.decisions, batched.features), (one, None)):
        p = np.array([d.probe for d in decisions])
        d = np.array([d.dv for d in decisions])
        np.testing.assert_allclose(p, offline_p, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(d, offline_d, rtol=1e-5, atol=1e-5)
        assert [x.delegated for x in decisions] == off_delegated
        assert [x.statistic for x in decisions] == off_statistic  # same decisions, same bets
        assert [x.t for x in decisions] == list(range(len(convs)))
        if feats is not None:
            np.testing.assert_allclose(feats, X, rtol=1e-5, atol=1e-5)
    assert batched.state == state == off_state
    assert 0 < sum(x.delegated for x in one) < len(convs)  # the test sees both decisions
    ids = encode_conversations(lm.tokenizer, convs)
    assert [x.n_tokens for x in one] == [len(t) for t in ids]


def test_uncertainty_calibration_is_fed_the_probe_score() -> None:
    lm = _loaded("llama")
    convs = conversations(9)
    probes, X = _fitted(lm, convs, "mean")
    rng = np.random.default_rng(3)
    # calibration probe scores spread like these requests' scores, so both decisions occur
    p_cal = np.clip(np.tile(probes.safety_scores(X), 40) + rng.normal(0, 1e-3, 40 * 9), 0, 1)
    n = p_cal.size
    cal = calibrate_uncertainty(rng.integers(0, 2, n), p_cal, rng.uniform(size=n), alpha=0.5)
    delegator = Delegator(cal)
    monitor = LatentMonitor(lm, probes, delegator)
    res = monitor.decide(monitor.init(), convs)
    off_delegated, _, _ = _stream(delegator, probes.safety_scores(X))
    assert [d.delegated for d in res.decisions] == off_delegated
    assert 0 < sum(off_delegated) < len(convs)


class _ForwardCounter:
    """Records the input length of every call of the model's forward."""

    def __init__(self, model: Any) -> None:
        self.shapes: list[tuple[int, ...]] = []
        self.handle = model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, _mod: Any, args: Any, kwargs: Any) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.shapes.append(tuple(ids.shape))


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_the_forward_runs_once_per_request_and_generation_reuses_its_cache(arch: str) -> None:
    lm = _loaded(arch)
    convs = conversations(5)
    probes, _ = _fitted(lm, convs, "mean")
    monitor = LatentMonitor(lm, probes, Delegator(_dv_calibration()), padding="left")
    counter = _ForwardCounter(lm.model)
    state = monitor.init()
    for conv in convs:
        state = monitor.decide(state, [conv]).state
    assert len(counter.shapes) == len(convs)  # exactly one forward per request
    counter.shapes.clear()
    monitor.decide(monitor.init(), convs)
    assert counter.shapes == [(len(convs), counter.shapes[0][1])]  # one forward per batch

    # generation: the prompt goes through the model once, then one token per step
    n_new = 5
    counter.shapes.clear()
    seen_at_decision: list[int] = []
    res = monitor.decide(
        monitor.init(),
        convs,
        generate=n_new,
        on_decision=lambda d: seen_at_decision.append(len(counter.shapes)),
    )
    width = counter.shapes[0][1]
    assert counter.shapes[0] == (len(convs), width) and width > 1
    assert counter.shapes[1:] == [(len(convs), 1)] * (n_new - 1)
    assert seen_at_decision == [1] * len(convs)  # decided before any new token was computed
    counter.handle.remove()
    # the prompt is the conversation (BOS dropped) and then the template's generation prompt
    batch = monitor.encode(convs, generation_prompt=True)
    tok: Any = lm.tokenizer
    for i, conv in enumerate(convs):
        msgs = [{"role": "user", "content": conv}] if isinstance(conv, str) else conv
        want = tok.apply_chat_template(msgs, add_generation_prompt=True)["input_ids"][1:]
        row = batch.input_ids[i][batch.attention_mask[i].bool()].tolist()
        assert row == list(want) and tok.convert_ids_to_tokens(row[-1]) == "<|assistant|>"
    # the same tokens as a plain greedy generate() on the same prompt
    model: Any = lm.model
    ref = model.generate(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        max_new_tokens=n_new,
        do_sample=False,
        pad_token_id=monitor.pad_id,
    )[:, batch.input_ids.shape[1] :].tolist()
    eos = lm.tokenizer.eos_token_id
    for d, row in zip(res.decisions, ref, strict=True):
        assert d.generated is not None and d.text is not None
        expect = row[: row.index(eos) + 1] if eos in row else row
        assert list(d.generated) == expect
    # the decisions do not depend on generating
    plain = monitor.decide(monitor.init(), convs)
    np.testing.assert_allclose(
        [d.dv for d in res.decisions], [d.dv for d in plain.decisions], rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_generation_stops_as_plain_generate_when_the_first_token_ends_a_row(arch: str) -> None:
    """A row whose first new token (chosen by the monitored prefill) ends it is finished, as
    in ``generate``: same tokens, and no decoding steps beyond those of a plain greedy
    ``generate`` (before, such a row ran on until a second end-of-sequence token)."""
    lm = _loaded(arch)
    convs = conversations(5)
    probes, _ = _fitted(lm, convs, "mean")
    monitor = LatentMonitor(lm, probes, Delegator(_dv_calibration()), padding="left")
    model: Any = lm.model
    n_new = 6

    def plain(requests: list[Any]) -> list[list[int]]:
        b = monitor.encode(requests, generation_prompt=True)
        out = model.generate(
            input_ids=b.input_ids,
            attention_mask=b.attention_mask,
            max_new_tokens=n_new,
            do_sample=False,
            pad_token_id=monitor.pad_id,
        )
        return [list(map(int, row)) for row in out[:, b.input_ids.shape[1] :].tolist()]

    free = plain(convs)
    # end of sequence: row 0's first token, and the third token of a row that starts otherwise
    late = next(row for row in free if row[0] != free[0][0])
    eos = [free[0][0], late[2]]
    model.generation_config.eos_token_id = eos

    def kept(row: list[int]) -> list[int]:
        return next((row[: k + 1] for k, t in enumerate(row) if t in eos), row)

    counter = _ForwardCounter(model)
    for requests in (convs, convs[:1]):
        counter.shapes.clear()
        ref = plain(requests)
        n_plain = len(counter.shapes)
        counter.shapes.clear()
        res = monitor.decide(monitor.init(), requests, generate=n_new)
        assert len(counter.shapes) == n_plain  # no extra decoding step
        assert [list(d.generated or ()) for d in res.decisions] == [kept(r) for r in ref]
        if len(requests) > 1:  # the batch mixes rows ended by the prefill and rows that run on
            assert 0 < sum(r[0] in eos for r in ref) < len(requests)
        else:  # the prefill's token ends the only row: the prefill is the only forward
            assert ref[0][0] in eos and n_plain == 1
    counter.handle.remove()


def test_options_are_validated_at_the_edge() -> None:
    lm = _loaded("llama")
    convs = conversations(3)
    probes, _ = _fitted(lm, convs, "mean")
    delegator = Delegator(_dv_calibration())
    junk: Any = "middle"  # not a padding, not probes, not a delegator, not a state
    with pytest.raises(ValueError, match=r"^padding"):
        LatentMonitor(lm, probes, delegator, padding=junk)
    with pytest.raises(ValueError, match=r"^max_tokens"):
        LatentMonitor(lm, probes, delegator, max_tokens=0)
    with pytest.raises(TypeError, match=r"^probes"):
        LatentMonitor(lm, junk, delegator)
    with pytest.raises(TypeError, match=r"^delegator"):
        LatentMonitor(lm, probes, junk)
    monitor = LatentMonitor(lm, probes, delegator, padding="right")
    with pytest.raises(TypeError, match=r"^state"):
        monitor.decide(junk, convs)
    with pytest.raises(ValueError, match=r"^generate"):
        monitor.decide(monitor.init(), convs, generate=-1)
    with pytest.raises(ValueError, match=r"^requests"):
        monitor.decide(monitor.init(), [])
    with pytest.raises(ValueError, match=r"^padding"):  # unequal rows, right padding
        monitor.decide(monitor.init(), convs, generate=2)


def test_max_tokens_caps_what_the_model_reads() -> None:
    lm = _loaded("llama")
    convs = conversations(6)
    probes, X = _fitted(lm, convs, "mean")
    monitor = LatentMonitor(lm, probes, Delegator(_dv_calibration()), max_tokens=CONTEXT)
    res = monitor.decide(monitor.init(), convs)
    np.testing.assert_allclose(res.features, X, rtol=1e-5, atol=1e-5)
    assert max(d.n_tokens for d in res.decisions) == CONTEXT


# ----------------------------------------------------------------------------- probe files
def _probes(model_hash: str = HASH, layer: int = LAYER, n_blocks: int = N_BLOCKS) -> LatentProbes:
    rng = np.random.default_rng(0)
    return LatentProbes(
        spec=FeatureSpec(
            model_hash=model_hash,
            n_blocks=n_blocks,
            hidden_size=HIDDEN,
            layer=layer,
            pooling="last",
            context=None,
        ),
        safety_coef=rng.normal(size=HIDDEN),
        safety_intercept=-0.25,
        dv_coef=rng.normal(size=HIDDEN) * 1e-300,
        dv_intercept=1e300,
        notes={"training": "random"},
    )


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@given(st.lists(finite, min_size=2 * HIDDEN, max_size=2 * HIDDEN), finite, finite)
def test_probe_json_round_trips_exactly(coefs: list[float], b1: float, b2: float) -> None:
    p = _probes()
    q = LatentProbes(
        spec=p.spec,
        safety_coef=np.array(coefs[:HIDDEN]),
        safety_intercept=b1,
        dv_coef=np.array(coefs[HIDDEN:]),
        dv_intercept=b2,
    )
    back = LatentProbes.from_json(q.to_json())
    assert back == q
    assert back.safety_coef.tobytes() == q.safety_coef.tobytes()  # bit for bit (-0.0 too)
    assert back.dv_coef.tobytes() == q.dv_coef.tobytes()
    assert back.safety_intercept == b1 and back.dv_intercept == b2


def test_probe_files_are_checksummed_and_checked_against_the_model(tmp_path: Path) -> None:
    p = _probes()
    path = p.save(tmp_path / "probes.json")
    assert load_probes(path) == p
    assert "LatentProbes(layer 2 of 4, last over all tokens" in repr(p)
    text = path.read_text()
    payload = json.loads(text)
    payload["fields"]["dv_intercept"] = 0.0  # an edit
    with pytest.raises(ValueError, match=r"^text: checksum"):
        LatentProbes.from_json(json.dumps(payload))
    with pytest.raises(ValueError, match=r"^text: not valid JSON"):
        LatentProbes.from_json(text[: len(text) // 2])  # truncated
    with pytest.raises(ValueError, match=r"^text: unknown schema_version"):
        LatentProbes.from_json(text.replace('"schema_version": 1', '"schema_version": 9'))
    with pytest.raises(FileNotFoundError, match=r"^path"):
        load_probes(tmp_path / "missing.json")
    # another model (sha256), a layer the model lacks, another width
    with pytest.raises(ValueError, match=r"^model: its sha256"):
        load_probes(path, model_hash="cd" * 32)
    with pytest.raises(ValueError, match=r"^model: has 2 blocks"):
        load_probes(path, model_hash=HASH, n_blocks=2)
    with pytest.raises(ValueError, match=r"^model: hidden size"):
        check_model(p, model_hash=HASH, n_blocks=4, hidden_size=64)
    # and at the monitor, against a real model folder (its sha256 is the weights file's)
    folder = tmp_path / "tiny"
    save_tiny_llama(str(folder))
    lm = load_model(folder, device="cpu")
    cal = Delegator(_dv_calibration())
    with pytest.raises(ValueError, match=r"^model: its sha256"):
        LatentMonitor(lm, p, cal)
    with pytest.raises(ValueError, match=r"^model: has 4 blocks, so it lacks layer 6"):
        LatentMonitor(lm, _probes(lm.source_hash, layer=6, n_blocks=8), cal)
    LatentMonitor(lm, _probes(lm.source_hash), cal)  # the right model is accepted


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"model_hash": ""}, "^model_hash"),
        ({"layer": 4}, "^layer"),
        ({"layer": -1}, "^layer"),
        ({"pooling": "max"}, "^pooling"),
        ({"context": 0}, "^context"),
        ({"hidden_size": 0}, "^hidden_size"),
    ],
)
def test_feature_spec_validates(kwargs: dict[str, Any], match: str) -> None:
    base: dict[str, Any] = dict(
        model_hash=HASH, n_blocks=4, hidden_size=HIDDEN, layer=1, pooling="mean", context=8
    )
    with pytest.raises(ValueError, match=match):
        FeatureSpec(**{**base, **kwargs})


def test_probe_coefficients_are_validated() -> None:
    p = _probes()
    with pytest.raises(ValueError, match=r"^safety_coef: expected shape"):
        LatentProbes(p.spec, np.zeros(3), 0.0, p.dv_coef, 0.0)
    with pytest.raises(ValueError, match=r"^dv_coef: must be finite"):
        LatentProbes(p.spec, p.safety_coef, 0.0, np.full(HIDDEN, np.nan), 0.0)
    with pytest.raises(ValueError, match=r"^dv_intercept"):
        LatentProbes(p.spec, p.safety_coef, 0.0, p.dv_coef, float("inf"))
    with pytest.raises(ValueError, match=r"^X: expected shape"):
        p.safety_scores(np.zeros((2, 3)))
    assert not p.safety_coef.flags.writeable
