"""GPU extraction throughput and model-FLOP utilisation on a Llama-3.2-1B-shaped model.

Self-contained: the model is built from a config with random weights (no download, no network),
in bfloat16 with SDPA attention, and fed random token ids of ``--seq-len`` (default 512) tokens.
It measures :func:`probes.extract.pool_token_ids` (forward hooks on the input norms, forward
stopped after the deepest requested layer, mean pooling) and prints tokens/s and MFU.

FLOPs per token (forward only, PaLM appendix B convention, Chowdhery et al. 2022):

    2 * P_run + 4 * n_run * d_model * T

where ``P_run`` are the weights of the blocks actually run (attention + MLP matrices of
``n_run = deepest layer`` full blocks; embeddings, final norm and LM head are not run) and the
second term counts the attention score and value products (``Q K^T`` and ``A V``) over the full
``T x T`` square (the causal half is not subtracted, as in that convention). MFU = achieved
FLOP/s divided by ``--peak-tflops`` (default 989: the H200's dense bf16 tensor-core peak; H100
SXM is the same; use 312 for an A100).

    python bench/gpu_extraction.py                      # GPU: 1B-shaped, bf16, T = 512
    python bench/gpu_extraction.py --device cpu --small  # CPU smoke run (a few seconds)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

LLAMA_1B = {  # Llama-3.2-1B
    "hidden_size": 2048,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "intermediate_size": 8192,
    "vocab_size": 128256,
    "max_position_embeddings": 8192,
    "rope_theta": 500000.0,
    "tie_word_embeddings": True,
}
SMALL = {
    "hidden_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "intermediate_size": 1024,
    "vocab_size": 4096,
    "max_position_embeddings": 1024,
    "tie_word_embeddings": True,
}


def block_params(cfg: Mapping[str, float]) -> int:
    """Weights of one Llama block's matrices (q, k, v, o, gate, up, down)."""
    d, f = int(cfg["hidden_size"]), int(cfg["intermediate_size"])
    kv = d * int(cfg["num_key_value_heads"]) // int(cfg["num_attention_heads"])
    return d * d * 2 + d * kv * 2 + 3 * d * f


def flops_per_token(cfg: Mapping[str, float], n_run: int, seq_len: int) -> float:
    return 2.0 * n_run * block_params(cfg) + 4.0 * n_run * float(cfg["hidden_size"]) * seq_len


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--small", action="store_true", help="a small config (CPU smoke run)")
    parser.add_argument("--seq-len", type=int, default=None, help="tokens per input (512)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 32 (GPU), 2 (small)")
    parser.add_argument("--n", type=int, default=None, help="inputs per timed run")
    parser.add_argument("--layers", default=None, help="default: the last block")
    parser.add_argument("--dtype", default=None, help="default bfloat16 (float32 with --small)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense peak, TFLOP/s")
    args = parser.parse_args()

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from probes.extract import pool_token_ids

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    shape = SMALL if args.small else LLAMA_1B
    dtype = getattr(torch, args.dtype or ("float32" if args.small else "bfloat16"))
    seq_len = args.seq_len or (128 if args.small else 512)
    batch = args.batch_size or (2 if args.small else 32)
    n = args.n or (4 * batch if args.small else 8 * batch)
    n_layers = int(shape["num_hidden_layers"])
    layers = [int(x) for x in args.layers.split(",")] if args.layers else [n_layers - 1]
    # transformers' LlamaConfig stub omits the **kwargs that take attn_implementation
    config = LlamaConfig(**shape, attn_implementation="sdpa")  # type: ignore[call-arg]
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype).eval()
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(10, int(shape["vocab_size"]), (n, seq_len), generator=gen).tolist()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def run() -> float:
        sync()
        t0 = time.perf_counter()
        acts = pool_token_ids(model, ids, layers=layers, batch_size=batch)
        sync()
        assert acts.shape == (n, len(layers), int(shape["hidden_size"]))
        return time.perf_counter() - t0

    run()  # warm-up (kernels, allocator)
    times = [run() for _ in range(args.repeats)]
    med = statistics.median(times)
    tokens = n * seq_len
    n_run = max(layers)  # full blocks run before the deepest hook stops the forward
    fpt = flops_per_token(shape, n_run, seq_len)
    achieved = tokens / med * fpt
    report = {
        "model": ("small Llama" if args.small else "Llama-3.2-1B-shaped") + " (random weights)",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": str(dtype).removeprefix("torch."),
        "attention": model.config._attn_implementation,
        "seq_len": seq_len,
        "batch_size": batch,
        "n_inputs": n,
        "layers": layers,
        "blocks_run": n_run,
        "flops_per_token": fpt,
        "flop_formula": "2*P_run + 4*n_run*d_model*T (P_run: matrices of the blocks run)",
        "runs_s": times,
        "tokens_per_s": tokens / med,
        "achieved_tflops": achieved / 1e12,
        "peak_tflops": args.peak_tflops,
        "mfu": achieved / (args.peak_tflops * 1e12),
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
