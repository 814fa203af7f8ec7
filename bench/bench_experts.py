"""Expert-scoring throughput: batched likelihood continuation vs activation extraction.

One run, one process, the same inputs for every method, on a *random-weight* model with the shape
of SmolLM2-135M (``LlamaConfig``: hidden 576, 30 layers, 9 heads, 3 kv heads, intermediate 1536,
vocab 49152, tied embeddings; built from the config, nothing downloaded) and the word-level
tokenizer + chat template of the test fixtures (``tests/_probes_fixtures.py``). Inputs are random
word sequences of realistic length (256-512 tokens; ``--quick``: 256-384).

Measured, interleaved per repeat (extraction, batched, unbatched, ...) and reported as medians:

* ``extract``: :func:`probes.extract.extract_activations` (sorted batches, forward stopped after
  the requested layer; default the last block, i.e. nearly the whole network, for equal work);
* ``expert batched``: :func:`probes.experts.likelihood_continuation` with ``batch_size``;
* ``expert unbatched``: the same with ``batch_size=1`` (the previous, one-input-at-a-time
  algorithm: shared system-prompt cache, one prefix pass, both completions from its cache).

Throughput is in *input tokens* per second: the tokens of each input's conversation under the chat
template (the count extraction reports), the same numerator for every method, so the ratios are
ratios of wall time. The expert also runs the system prompt (once, cached) and the completions.
The machine is shared: only ratios from the same run are meaningful. The batched and unbatched
scores are compared (``max_abs_diff``).

    python bench/bench_experts.py [--quick] [--n 16] [--batch-size 8] [--threads 1]
                                  [--max-tokens N] [--layer L] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "tests"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

SMOLLM2_135M_SHAPE: dict[str, Any] = dict(
    hidden_size=576,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    intermediate_size=1536,
    vocab_size=49152,
    tie_word_embeddings=True,
    max_position_embeddings=2048,
    rms_norm_eps=1e-5,
    rope_theta=100000.0,
)


def _model() -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model: Any = LlamaForCausalLM(LlamaConfig(**SMOLLM2_135M_SHAPE))
    return model.eval()


def _inputs(n: int, lo: int, hi: int, seed: int = 0) -> list[str]:
    from _probes_fixtures import WORDS

    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi))) for _ in range(n)]


def _prompt() -> Any:
    from probes.experts import ContinuationPrompt

    # Only fixture-vocabulary words, so that the word-level tokenizer has no <unk> collisions.
    return ContinuationPrompt(
        system_prompt=(
            "In the user prompt you are given a conversation . Please analyze if the "
            "conversation given below corresponds to a high stakes situation . Only respond "
            'with your assessment of the conversation as either " high stakes " or " low '
            'stakes " , starting your answer with " The given conversation is " .'
        ),
        high_completion="The given conversation is high stakes .",
        low_completion="The given conversation is low stakes .",
    )


def run(
    quick: bool = False,
    *,
    n: int | None = None,
    batch_size: int = 8,
    layer: int | None = None,
    repeats: int | None = None,
    threads: int = 1,
    max_tokens: int | None = None,
) -> dict[str, Any]:
    """Run the benchmark and return its numbers (see the module docstring)."""
    import numpy as np
    import torch
    from _probes_fixtures import tiny_tokenizer

    from probes.experts import likelihood_continuation
    from probes.extract import extract_activations

    torch.set_num_threads(threads)
    n = n if n is not None else (8 if quick else 16)
    repeats = repeats if repeats is not None else (1 if quick else 2)
    lo, hi = (256, 384) if quick else (256, 512)
    tok = tiny_tokenizer()
    model = _model()
    layer = layer if layer is not None else int(SMOLLM2_135M_SHAPE["num_hidden_layers"]) - 1
    texts = _inputs(n, lo, hi)
    prompt = _prompt()

    def extract() -> Any:
        return extract_activations(
            model,
            tok,
            texts,
            layers=[layer],
            max_tokens=max_tokens,
            batch_size=batch_size,
            progress=False,
        )

    def batched() -> Any:
        return likelihood_continuation(
            model,
            tok,
            texts,
            prompt=prompt,
            max_tokens=max_tokens,
            batch_size=batch_size,
            progress=False,
        )

    def unbatched() -> Any:
        return likelihood_continuation(
            model, tok, texts, prompt=prompt, max_tokens=max_tokens, batch_size=1, progress=False
        )

    methods = {"extract": extract, "expert batched": batched, "expert unbatched": unbatched}
    # warm-up on two inputs (allocator, lazy init), not timed
    with torch.inference_mode():
        model(input_ids=torch.ones((2, 64), dtype=torch.long))
    times: dict[str, list[float]] = {k: [] for k in methods}
    results: dict[str, Any] = {}
    for _ in range(repeats):
        for name, fn in methods.items():
            t0 = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - t0)
    input_tokens = int(results["extract"].n_tokens.sum())
    rows: list[dict[str, Any]] = []
    for name in methods:
        sec = statistics.median(times[name])
        own = int(results[name].n_tokens.sum())
        rows.append(
            {
                "method": name,
                "seconds": sec,
                "input_tokens_per_s": input_tokens / sec,
                "own_tokens": own,
                "own_tokens_per_s": own / sec,
                "examples_per_s": n / sec,
            }
        )
    by = {r["method"]: r for r in rows}
    diff = float(
        max(
            np.abs(results["expert batched"].ll_high - results["expert unbatched"].ll_high).max(),
            np.abs(results["expert batched"].ll_low - results["expert unbatched"].ll_low).max(),
        )
    )
    ext = by["extract"]["input_tokens_per_s"]
    return {
        "model": "random-weight SmolLM2-135M shape (LlamaConfig, float32, CPU)",
        "config": {
            "n": n,
            "input_tokens": input_tokens,
            "mean_input_tokens": input_tokens / n,
            "batch_size": batch_size,
            "layer": layer,
            "repeats": repeats,
            "threads": threads,
            "max_tokens": max_tokens,
            "quick": quick,
            "torch": torch.__version__,
        },
        "rows": rows,
        "ratio_batched_vs_extract": by["expert batched"]["input_tokens_per_s"] / ext,
        "ratio_unbatched_vs_extract": by["expert unbatched"]["input_tokens_per_s"] / ext,
        "speedup_batched_vs_unbatched": by["expert unbatched"]["seconds"]
        / by["expert batched"]["seconds"],
        "max_abs_diff_batched_vs_unbatched": diff,
    }


def _table(res: dict[str, Any]) -> str:
    cfg = res["config"]
    lines = [
        f"{res['model']}; {cfg['n']} inputs, {cfg['mean_input_tokens']:.0f} tokens on average, "
        f"max_tokens {cfg['max_tokens']}, batch {cfg['batch_size']}, "
        f"extraction layer {cfg['layer']}, {cfg['threads']} thread(s), "
        f"median of {cfg['repeats']}",
        "",
        "| method | seconds | input tok/s | own tok/s | examples/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['method']} | {r['seconds']:.2f} | {r['input_tokens_per_s']:.0f} | "
            f"{r['own_tokens_per_s']:.0f} | {r['examples_per_s']:.2f} |"
        )
    lines += [
        "",
        f"batched expert / extraction (same run): {res['ratio_batched_vs_extract']:.0%} "
        "(goal >= 50%)",
        f"unbatched expert / extraction: {res['ratio_unbatched_vs_extract']:.0%}",
        f"batched vs unbatched speed-up: {res['speedup_batched_vs_unbatched']:.2f}x",
        f"max |ll batched - ll unbatched|: {res['max_abs_diff_batched_vs_unbatched']:.2e}",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--layer", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-tokens", type=int, default=None, help="truncate the inputs")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()
    res = run(
        args.quick,
        n=args.n,
        batch_size=args.batch_size,
        layer=args.layer,
        repeats=args.repeats,
        threads=args.threads,
        max_tokens=args.max_tokens,
    )
    print(_table(res))
    if args.json is not None:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
