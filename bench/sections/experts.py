"""Expert scoring throughput: batched likelihood continuation vs activation extraction.

Calls ``bench/bench_experts.run(quick)`` (random-weight SmolLM2-135M-shaped model, the test
fixtures' word-level tokenizer): extraction, batched expert, unbatched expert, interleaved per
repeat, in input tokens per second.
"""

from __future__ import annotations

from harness import DisagreementError, Section, met, paragraphs

TARGET = 0.5  # batched expert tokens/s / extraction tokens/s


def run(quick: bool) -> Section:
    import bench_experts

    sec = Section(
        key="experts",
        title="6. Expert scoring: batched likelihood continuation vs activation extraction",
        target=f"batched expert scoring ≥ {TARGET:.0%} of extraction input tokens/s (same run);"
        " batched scores equal to unbatched",
        columns=[
            ("method", "method"),
            ("seconds", "seconds (median)"),
            ("tps", "input tokens / s"),
            ("own_tps", "own tokens / s"),
            ("eps", "examples / s"),
            ("vs_extract", "vs extraction"),
        ],
    )
    res = bench_experts.run(quick)
    by = {r["method"]: r for r in res["rows"]}
    ext = by["extract"]["input_tokens_per_s"]
    for r in res["rows"]:
        sec.rows.append(
            {
                "method": r["method"],
                "seconds": f"{r['seconds']:.2f}",
                "tps": f"{r['input_tokens_per_s']:.0f}",
                "own_tps": f"{r['own_tokens_per_s']:.0f}",
                "eps": f"{r['examples_per_s']:.2f}",
                "vs_extract": f"{r['input_tokens_per_s'] / ext:.0%}",
            }
        )
    diff = res["max_abs_diff_batched_vs_unbatched"]
    if diff > 1e-3:
        raise DisagreementError(f"experts: batched vs unbatched log-likelihoods differ by {diff}")
    ratio = res["ratio_batched_vs_extract"]
    cfg = res["config"]
    sec.notes += paragraphs(
        f"""
        {res["model"]}; {cfg["n"]} inputs, {cfg["mean_input_tokens"]:.0f} tokens on average
        ({cfg["input_tokens"]} in all), batch {cfg["batch_size"]}, extraction at layer
        {cfg["layer"]} (nearly the whole network, equal work), {cfg["threads"]} thread(s),
        median of {cfg["repeats"]} interleaved repeats (`bench/bench_experts.py`).

        Throughput in input tokens (the conversation under the chat template) per second, the
        same numerator for every method, so ratios are ratios of wall time; the expert also runs
        the cached system prompt and both completions ("own tokens"). Batched vs unbatched
        speed-up {res["speedup_batched_vs_unbatched"]:.2f}×; max |ll batched − ll unbatched| =
        {diff:.1e}.
        """
    )
    sec.rows[-1]["raw"] = res
    sec.headline.append(
        {
            "item": "6. Expert scoring vs extraction",
            "comparison": f"{cfg['n']} inputs × ~{cfg['mean_input_tokens']:.0f} tokens, batch"
            f" {cfg['batch_size']}",
            "ratio": f"batched expert = {ratio:.0%} of extraction tokens/s;"
            f" {res['speedup_batched_vs_unbatched']:.2f}× unbatched",
            "agreement": f"batched = unbatched scores (max diff {diff:.0e})",
            "target": f"≥ {TARGET:.0%}: {met(ratio >= TARGET)} ({ratio:.0%})",
        }
    )
    return sec
