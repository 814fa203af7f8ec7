"""CPU extraction throughput at 512-token context, against the matmul rate of the same shapes.

Model: a SmolLM2-135M-shaped Llama (hidden 576, 30 blocks, 9 heads, 3 kv heads, intermediate
1536, vocab 49152) with random weights, float32, SDPA attention, built from a config (no
download). Inputs: ``--n`` random token sequences of ``--seq-len`` (512) tokens, so every batch is
full (no padding). Extraction is :func:`probes.extract.pool_token_ids` at ``--layer`` (the forward
stops after it: ``layer`` full blocks are run).

Anchor, measured in the same run and interleaved with the extraction (the machine is shared, so
only same-run ratios mean something): the seven matrix products of one block (q, k, v, o, gate,
up, down) with the same ``batch * seq_len`` rows, ``layer`` times, via ``torch.nn.functional.
linear`` on the model's own weights. Its rate is ``2 * rows * P_block * layer / seconds``.

Extraction FLOPs per token (PaLM appendix B convention, Chowdhery et al. 2022, forward only):
``2 * P_run + 4 * n_run * d_model * T``; the report gives the ratio of the extraction's FLOP rate
to the matmul rate with and without the attention term (goal: >= 0.8).

    python bench/bench_extraction.py [--n 8] [--batch-size 4] [--layer 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SMOLLM2_135M: dict[str, Any] = {  # mixed int / float / bool config values
    "hidden_size": 576,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "intermediate_size": 1536,
    "vocab_size": 49152,
    "max_position_embeddings": 8192,
    "rope_theta": 100000.0,
    "tie_word_embeddings": True,
}


def run(
    *,
    n: int = 8,
    seq_len: int = 512,
    batch_size: int = 4,
    layer: int = 16,
    repeats: int = 3,
    threads: int = 1,
) -> dict[str, Any]:
    """Extraction vs matched-shape matmul rates (see the module docstring); returns the report."""
    args = argparse.Namespace(
        n=n, seq_len=seq_len, batch_size=batch_size, layer=layer, repeats=repeats, threads=threads
    )
    import torch
    import torch.nn.functional as F
    from transformers import LlamaConfig, LlamaForCausalLM

    from probes.extract import pool_token_ids

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    # transformers' LlamaConfig stub omits the **kwargs that take attn_implementation
    config = LlamaConfig(**SMOLLM2_135M, attn_implementation="sdpa")  # type: ignore[call-arg]
    model = LlamaForCausalLM(config).eval()
    d = SMOLLM2_135M["hidden_size"]
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(10, SMOLLM2_135M["vocab_size"], (args.n, args.seq_len), generator=gen)
    ids_list = ids.tolist()
    n_run = args.layer
    blk = model.model.layers[0]
    weights = [
        blk.self_attn.q_proj.weight,
        blk.self_attn.k_proj.weight,
        blk.self_attn.v_proj.weight,
        blk.self_attn.o_proj.weight,
        blk.mlp.gate_proj.weight,
        blk.mlp.up_proj.weight,
        blk.mlp.down_proj.weight,
    ]
    p_block = sum(w.numel() for w in weights)
    rows = args.batch_size * args.seq_len
    x_in = {w.shape[1]: torch.randn(rows, w.shape[1], generator=gen) for w in weights}

    def matmuls() -> float:
        t0 = time.perf_counter()
        with torch.inference_mode():
            for _ in range(n_run * (args.n // args.batch_size)):
                for w in weights:
                    F.linear(x_in[w.shape[1]], w)
        return time.perf_counter() - t0

    def extract() -> float:
        t0 = time.perf_counter()
        pool_token_ids(model, ids_list, layers=[args.layer], batch_size=args.batch_size)
        return time.perf_counter() - t0

    extract()  # warm-up
    matmuls()
    t_mm: list[float] = []
    t_ex: list[float] = []
    for _ in range(args.repeats):
        t_mm.append(matmuls())
        t_ex.append(extract())
    mm, ex = statistics.median(t_mm), statistics.median(t_ex)
    n_batches = args.n // args.batch_size
    mm_flops = 2.0 * rows * p_block * n_run * n_batches
    tokens = args.n * args.seq_len
    linear_per_token = 2.0 * p_block * n_run
    attn_per_token = 4.0 * n_run * d * args.seq_len
    mm_rate = mm_flops / mm
    ex_rate = tokens * (linear_per_token + attn_per_token) / ex
    ex_rate_linear = tokens * linear_per_token / ex
    report = {
        "model": "SmolLM2-135M-shaped Llama, random weights, float32, sdpa, cpu",
        "seq_len": args.seq_len,
        "n_inputs": args.n,
        "batch_size": args.batch_size,
        "layer": args.layer,
        "threads": args.threads,
        "extraction_runs_s": t_ex,
        "matmul_runs_s": t_mm,
        "extraction_tokens_per_s": tokens / ex,
        "flops_per_token": linear_per_token + attn_per_token,
        "extraction_gflops": ex_rate / 1e9,
        "matmul_gflops": mm_rate / 1e9,
        "ratio": ex_rate / mm_rate,
        "ratio_linear_flops_only": ex_rate_linear / mm_rate,
        "gpu": "not measured here: see bench/gpu_extraction.py",
    }
    return report


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--layer", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    print(json.dumps(run(**vars(args)), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
