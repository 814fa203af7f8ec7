"""Tiny offline fixtures for the probes tests: a word-level tokenizer and random Llama / GPT-2."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

WORDS = (
    "the a patient doctor needs help now urgent bleeding chest pain calm weather today "
    "what is recipe for cake please call ambulance high low stakes conversation given "
    "In user prompt you are Only respond with your assessment of either starting answer "
    'The given . , " analyze if below corresponds to situation'
).split()
SPECIAL = ["<pad>", "<bos>", "<eos>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{{ '<|' + m['role'] + '|> ' + m['content'] + ' <|end|> ' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|> ' }}{% endif %}"
)


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {tok: i for i, tok in enumerate(SPECIAL + sorted(set(WORDS)))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_model(arch: str, vocab_size: int) -> PreTrainedModel:
    torch.manual_seed(0)
    model: PreTrainedModel
    if arch == "llama":
        model = LlamaForCausalLM(
            LlamaConfig(
                vocab_size=vocab_size,
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=4,
                num_attention_heads=4,
                num_key_value_heads=2,
                max_position_embeddings=256,
            )
        )
    elif arch == "gpt2":
        model = GPT2LMHeadModel(
            GPT2Config(vocab_size=vocab_size, n_embd=32, n_layer=4, n_head=4, n_positions=256)
        )
    else:
        raise ValueError(arch)
    # make the norms non-trivial so that "after the input norm" is actually tested
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "ln_" in name:
                p.uniform_(0.5, 1.5)
    return model.eval()


TEXTS: list[str | list[dict[str, str]]] = [
    "the patient needs help now",
    [
        {"role": "user", "content": "urgent chest pain bleeding"},
        {"role": "assistant", "content": "please call ambulance now"},
    ],
    "what is the weather today",
    "recipe for cake please",
    "the doctor is calm",
    [
        {"role": "system", "content": "you are the doctor"},
        {"role": "user", "content": "patient bleeding chest pain urgent help now please"},
    ],
    "a",
]


def conversations(n: int) -> list[str | list[dict[str, str]]]:
    """``n`` deterministic conversations of varied length built from :data:`TEXTS`."""
    out: list[str | list[dict[str, str]]] = []
    for i in range(n):
        base = TEXTS[i % len(TEXTS)]
        if isinstance(base, str):
            out.append(" ".join([base] * (1 + i % 4)))
        else:
            out.append([dict(m, content=m["content"] + " now" * (i % 5)) for m in base])
    return out


def save_tiny_llama(folder: str) -> None:
    """Write the tiny Llama and its tokenizer with ``save_pretrained`` (a local model folder)."""
    tok = tiny_tokenizer()
    model = tiny_model("llama", len(tok))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)


# --------------------------------------------------------------------------------------------
# Multi-process launcher for the crash / data-parallel tests. Run as a script, it imports torch
# and transformers once, then forks the ranks of each step (what torchrun does, with the same
# env:// variables), so that a step costs no re-import. A rank may be given a failpoint
# (probes.store.FAILPOINT_ENV), where it kills itself with SIGKILL; as torchrun does, the other
# ranks of a failed step are then killed too.


def _rank_main(rank: int, world: int, port: int, argv: list[str], failpoint: str | None) -> None:
    import os

    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    from probes.store import FAILPOINT_ENV

    if failpoint:
        os.environ[FAILPOINT_ENV] = failpoint
    else:
        os.environ.pop(FAILPOINT_ENV, None)
    torch.set_num_threads(1)
    from probes.__main__ import main

    os._exit(main(argv))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_step(argv: list[str], world: int, failpoints: dict[str, str]) -> list[int]:
    """Fork ``world`` ranks running ``python -m probes <argv>``; their exit codes (-9: killed)."""
    import multiprocessing as mp
    import os
    import signal
    import time

    ctx = mp.get_context("fork")
    port = _free_port()
    procs = [
        ctx.Process(target=_rank_main, args=(r, world, port, argv, failpoints.get(str(r))))
        for r in range(world)
    ]
    for p in procs:
        p.start()
    while any(p.exitcode is None for p in procs):
        if any(p.exitcode not in (None, 0) for p in procs):
            for p in procs:
                if p.exitcode is None and p.pid is not None:
                    os.kill(p.pid, signal.SIGKILL)
        time.sleep(0.02)
    for p in procs:
        p.join()
    return [int(p.exitcode or 0) for p in procs]


if __name__ == "__main__":
    import importlib
    import json
    import sys

    for mod in ("probes.__main__", "probes.expert_shards", "probes.extract", "probes.models"):
        importlib.import_module(mod)  # imported once, before forking

    steps = json.loads(sys.argv[1])
    print(json.dumps([run_step(s["argv"], s["world"], s.get("failpoints", {})) for s in steps]))
