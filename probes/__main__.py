"""Command line: ``python -m probes {extract,experts,artifacts,monitor} [options]``.

``extract`` and ``experts`` run in one process, or data-parallel when launched by ``torchrun``
(``torchrun --nproc-per-node N -m probes extract ...``; gloo on CPU, NCCL on GPUs). Parsing the
command line imports nothing heavy, so ``--help`` works without torch; a command that needs torch
says what to install when it is missing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

from . import monitor_cli
from .artifact_config import STAGES, ArtifactConfig, config_argv

INSTALL_HINT = (
    "the probes commands need PyTorch and transformers: pip install 'ctd-stats[probes]' "
    "(or pip install torch transformers accelerate)"
)
_DTYPES = ("auto", "float32", "bfloat16", "float16")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m probes",
        description="Activations, linear probes and LLM experts on real language models.",
        epilog=f"Requirements: {INSTALL_HINT}. Data-parallel: torchrun --nproc-per-node N "
        "-m probes extract ... (each rank writes its own shards; rank 0 writes the manifest).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def model_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--model",
            required=True,
            help="packaged alias, .gguf file, save_pretrained folder or hub name",
        )
        p.add_argument("--revision", default=None, help="hub revision")
        p.add_argument("--input", type=Path, required=True, help="JSONL file, one example a line")
        p.add_argument("--field", default="inputs", help="JSONL field holding the conversation")
        p.add_argument("--limit", type=int, default=None, help="first N examples only")
        p.add_argument("--out", type=Path, required=True, help="output directory")
        p.add_argument("--max-tokens", type=int, default=None, help="token limit per input")
        p.add_argument("--device", default=None, help="default: cuda:LOCAL_RANK if any, else cpu")
        p.add_argument("--dtype", choices=_DTYPES, default="auto", help="model weights dtype")
        p.add_argument(
            "--device-map", default=None, help="'auto': spread a large model (one process only)"
        )
        p.add_argument("--threads", type=int, default=None, help="torch CPU threads per rank")
        p.add_argument("--no-progress", action="store_true")

    ext = sub.add_parser("extract", help="mean-pooled layer activations into a sharded store")
    model_options(ext)
    ext.add_argument("--layers", required=True, help="comma-separated block indices")
    ext.add_argument("--batch-size", type=int, default=8)
    ext.add_argument("--shard-size", type=int, default=256, help="rows per store shard")
    ext.add_argument("--store-dtype", choices=["float32", "float16"], default="float32")
    ext.add_argument(
        "--no-verify",
        action="store_true",
        help="trust the commit records of stored shards (default: check their size and sha256 "
        "before skipping them; a shard that fails is computed again)",
    )

    exp = sub.add_parser("experts", help="likelihood-continuation expert scores P(high-stakes)")
    model_options(exp)
    exp.add_argument("--prompt", default="default", help="'default' or 'single_word'")

    art = sub.add_parser("artifacts", help="build the stakes activations + expert scores table")
    artifact_options(art)

    mon = sub.add_parser(
        "monitor",
        help="serve requests through a latent monitor: one forward, a Delegator decision each",
        description="Serve requests through a latent monitor (probes.live); resumable.",
    )
    monitor_cli.add_arguments(mon)
    return parser


def _csv(values: tuple[int, ...] | tuple[str, ...]) -> str:
    return ",".join(str(v) for v in values)


def artifact_options(art: argparse.ArgumentParser) -> None:
    """The ``artifacts`` options: one per :class:`ArtifactConfig` field, defaults from it."""
    d = ArtifactConfig()
    art.add_argument("--out-dir", type=Path, default=d.out_dir)
    art.add_argument("--name", default=d.name)
    art.add_argument("--work-dir", type=Path, default=d.work_dir)
    art.add_argument("--token-limit", type=int, default=d.token_limit, help="longest context read")
    art.add_argument(
        "--contexts", default=_csv(d.contexts), help="candidate contexts (the last = limit)"
    )
    art.add_argument("--expert-token-limit", type=int, default=d.expert_token_limit)
    art.add_argument("--layers", default=_csv(d.candidate_layers), help="candidate layers")
    art.add_argument("--batch-size", type=int, default=d.batch_size)
    art.add_argument("--shard-size", type=int, default=d.shard_size, help="rows per cached shard")
    art.add_argument(
        "--cap-per-group", type=int, default=d.cap_per_group, help="eval rows kept per file"
    )
    art.add_argument("--limit", type=int, default=d.limit, help="first N rows per file (quick)")
    art.add_argument("--experts", default=_csv(d.experts), help="of smollm2, gemma3, minilm")
    art.add_argument("--expert-prompt", default=d.expert_prompt, help="'default' or 'single_word'")
    art.add_argument("--crossfit-folds", type=int, default=d.crossfit_folds)
    art.add_argument("--stage", choices=STAGES, default=d.stage)
    art.add_argument(
        "--reverse-files",
        action="store_true",
        help="activations / experts stage: work from the other end (a second process)",
    )
    art.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    art.add_argument(
        "--jobs",
        type=int,
        choices=[1, 2],
        default=1,
        help="2: run the activations stage and the expert stages as two single-threaded "
        "processes side by side, then assemble (uses two cores better than one process)",
    )
    art.add_argument("--no-progress", action="store_true")


def artifact_config(args: argparse.Namespace) -> ArtifactConfig:
    """The :class:`ArtifactConfig` of parsed ``artifacts`` options."""
    return ArtifactConfig(
        out_dir=args.out_dir,
        name=args.name,
        work_dir=args.work_dir,
        token_limit=args.token_limit,
        contexts=tuple(int(x) for x in args.contexts.split(",") if x),
        expert_token_limit=args.expert_token_limit,
        candidate_layers=tuple(int(x) for x in args.layers.split(",") if x),
        batch_size=args.batch_size,
        shard_size=args.shard_size,
        cap_per_group=args.cap_per_group,
        limit=args.limit,
        experts=tuple(x for x in args.experts.split(",") if x),
        expert_prompt=args.expert_prompt,
        crossfit_folds=args.crossfit_folds,
        stage=args.stage,
        reverse_files=args.reverse_files,
        progress=not args.no_progress,
    )


def _read_inputs(path: Path, field: str, limit: int | None) -> list[Any]:
    from .data import parse_inputs

    if not path.is_file():
        raise SystemExit(f"--input: {path} does not exist")
    out: list[Any] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if field not in row:
                raise SystemExit(f"--field: line {lineno} of {path} has no field {field!r}")
            out.append(parse_inputs(row[field]))
            if limit is not None and len(out) >= limit:
                break
    return out


def _load(args: argparse.Namespace, local_rank: int, world: int) -> Any:
    import torch

    from .models import load_model

    if args.device_map is not None and world > 1:
        raise SystemExit("--device-map: not with several ranks (each rank holds a whole model)")
    device = args.device
    if device is None and torch.cuda.is_available():
        device = f"cuda:{local_rank}"
    dtype = None if args.dtype == "auto" else getattr(torch, args.dtype)
    return load_model(
        args.model, device=device, dtype=dtype, revision=args.revision, device_map=args.device_map
    )


def _run_model_command(args: argparse.Namespace) -> int:
    try:
        import torch
    except ModuleNotFoundError:
        print(f"error: {INSTALL_HINT}", file=sys.stderr)
        return 2
    from .distributed import init_from_env, shutdown

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    topo = init_from_env()
    try:
        loaded = _load(args, topo.local_rank, topo.world_size)
        convs = _read_inputs(args.input, args.field, args.limit)
        summary: dict[str, Any]
        if args.command == "extract":
            from .extract import ExtractionConfig, extract_sharded

            config = ExtractionConfig(
                layers=tuple(int(x) for x in args.layers.split(",") if x),
                model_name=args.model,
                model_hash=loaded.source_hash,
                max_tokens=args.max_tokens,
                batch_size=args.batch_size,
                shard_size=args.shard_size,
                dtype=args.store_dtype,
                progress=not args.no_progress,
            )
            run = extract_sharded(
                loaded.model,
                loaded.tokenizer,
                convs,
                args.out,
                config,
                topology=topo,
                verify=not args.no_verify,
            )
            summary = {
                "rank": run.rank,
                "world_size": run.world_size,
                "store": run.directory,
                "n_examples": run.n_examples,
                "shards_computed": run.shards_computed,
                "shards_total": run.shards_total,
                "shards_corrupt": run.shards_corrupt,
                "tokens_per_second": run.tokens_per_second,  # None (JSON null): none computed
            }
        else:
            from .expert_shards import score_experts_sharded

            scores = score_experts_sharded(
                loaded.model,
                loaded.tokenizer,
                convs,
                args.out,
                model_hash=loaded.source_hash,
                prompt=args.prompt,
                max_tokens=args.max_tokens,
                progress=not args.no_progress,
                topology=topo,
            )
            summary = {"rank": topo.rank, "world_size": topo.world_size, "out": str(args.out)}
            if scores is not None:
                summary["n_examples"] = len(scores.p_high)
        if topo.is_main:
            print(json.dumps(summary), flush=True)
    finally:
        shutdown()
    return 0


def stage_commands(cfg: ArtifactConfig) -> list[list[str]]:
    """``--jobs 2``: the single-threaded stage commands, built from ``cfg``.

    The first runs the activations stage; the second the embeddings, then the likelihood
    experts, then the activation shards from the other end (``--reverse-files``), so that both
    cores stay busy until the last shard. The caller then assembles with ``cfg`` itself.
    """
    head = [sys.executable, "-m", "probes"]

    def command(stage: str, reverse: bool = False) -> list[str]:
        stage_cfg = dataclasses.replace(cfg, stage=stage, reverse_files=reverse)
        return [*head, *config_argv(stage_cfg), "--threads", "1"]

    return [
        command("activations"),
        command("embeddings"),
        command("experts"),
        command("activations", reverse=True),
    ]


def _run_stages_side_by_side(cfg: ArtifactConfig) -> int:
    """Runs :func:`stage_commands`: the first in the background, the others one after another."""
    import subprocess

    first, *rest = stage_commands(cfg)
    background = subprocess.Popen(first)
    rc = 0
    for cmd in rest:
        rc = rc or subprocess.call(cmd)
    return background.wait() or rc


def _run_artifacts(args: argparse.Namespace) -> int:
    cfg = artifact_config(args)
    try:
        import torch
    except ModuleNotFoundError:
        print(f"error: {INSTALL_HINT}", file=sys.stderr)
        return 2
    from .artifact import build_artifact, run_stage

    if args.jobs == 2 and cfg.stage == "all":
        rc = _run_stages_side_by_side(cfg)
        if rc:
            return rc
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if cfg.stage == "all":
        build_artifact(cfg)
    else:
        run_stage(cfg)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "artifacts":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # packaged models only
        return _run_artifacts(args)
    if args.command == "monitor":
        return monitor_cli.run(args)
    return _run_model_command(args)


if __name__ == "__main__":
    raise SystemExit(main())
