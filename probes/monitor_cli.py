"""``python -m probes monitor``: serve a JSONL stream of requests through a latent monitor.

    python -m probes monitor --model M --probes probes.json --calibration cal.json \\
        --input requests.jsonl --out decisions.jsonl [--generate N] [--checkpoint-every K]

Each request (one JSON object a line: ``{"id": ..., "inputs": <text or messages>}``) goes
through the model once (:class:`probes.live.LatentMonitor`); one JSON line per request is
appended to ``--out``: ``id``, ``t`` (0-based stream index), ``probe`` (P(high-stakes)), ``dv``
(DV score), ``delegated``, ``statistic`` (the budget monitor's log e-value), ``alarm``,
``alarm_step``, ``n_tokens`` and, with ``--generate N``, ``text`` (the reply).

Crash safety. Before anything is written the whole input is checked (a malformed line or a
request without text is an error naming the line, and nothing is written). Every ``K`` requests
(at a batch boundary) the decisions file is flushed to disk and then a checkpoint is replaced
atomically (temporary file, fsync, rename): the delegator's exact JSON state, how many requests
are decided, the decisions file's length and the input's byte offset with the sha256 of the
input read so far. The same command after a ``SIGKILL`` at any point truncates the decisions to
the checkpoint's length and continues from the next request with the restored state, with the
same batches: no request is decided twice or skipped, and the file equals an uninterrupted run's.
A finished run leaves its checkpoint (``done`` = every request), so running it again decides
only requests appended to the input since.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .live import LiveDecision

__all__ = ["FAILPOINT_ENV", "add_arguments", "main", "run"]

#: Fault injection for the crash tests: ``"<site>:<n>"`` kills this process with ``SIGKILL`` the
#: ``n``-th (1-based) time it reaches ``site``: ``line`` (half of a decision line written),
#: ``flush`` (decisions on disk, checkpoint not yet replaced), ``checkpoint`` (temporary
#: checkpoint written, not yet renamed), ``batch`` (a batch decided, nothing of it written).
FAILPOINT_ENV = "CTD_PROBES_MONITOR_FAILPOINT"
CHECKPOINT_FORMAT = "probes.monitor.checkpoint"
_hits: dict[str, int] = {}


def _failpoint(site: str) -> None:
    spec = os.environ.get(FAILPOINT_ENV)
    if not spec:
        return
    want, _, count = spec.partition(":")
    if want == site:
        _hits[site] = _hits.get(site, 0) + 1
        if _hits[site] == int(count or "1"):
            os.kill(os.getpid(), signal.SIGKILL)


class InputError(ValueError):
    """A request line that cannot be served (message names the line)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``monitor`` command's options (imports nothing heavy)."""
    parser.add_argument(
        "--model", required=True, help="packaged alias, .gguf file, save_pretrained folder or hub"
    )
    parser.add_argument("--revision", default=None, help="hub revision")
    parser.add_argument("--probes", type=Path, required=True, help="probes JSON (probe_io)")
    parser.add_argument(
        "--calibration", type=Path, required=True, help="ThresholdCalibration JSON (to_json)"
    )
    parser.add_argument("--input", type=Path, required=True, help="requests, JSONL")
    parser.add_argument("--field", default="inputs", help="JSONL field holding the request")
    parser.add_argument("--out", type=Path, required=True, help="decisions, JSONL (appended)")
    parser.add_argument(
        "--checkpoint", type=Path, default=None, help="default: <out>.checkpoint.json"
    )
    parser.add_argument("--checkpoint-every", type=int, default=64, help="requests (K)")
    parser.add_argument("--batch-size", type=int, default=1, help="requests per forward")
    parser.add_argument("--padding", choices=["left", "right"], default="left")
    parser.add_argument("--generate", type=int, default=0, help="new tokens per request (N)")
    parser.add_argument("--max-tokens", type=int, default=None, help="token cap per request")
    parser.add_argument("--level", type=float, default=0.05, help="budget monitor's level")
    parser.add_argument("--device", default=None, help="default: cuda if any, else cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true")


# ---------------------------------------------------------------------------- the input
def _parse_line(raw: bytes, lineno: int, field: str) -> tuple[str, Any] | None:
    """(id, request) of one input line; None for a blank line; InputError when malformed."""
    from .data import parse_inputs

    text = raw.decode("utf-8", errors="strict").strip() if raw else ""
    if not text:
        return None
    try:
        row = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"--input: line {lineno} is not valid JSON ({exc.msg})") from None
    if not isinstance(row, dict):
        raise InputError(f"--input: line {lineno} is not a JSON object")
    if field not in row:
        raise InputError(f"--input: line {lineno} has no field {field!r} (the request's text)")
    try:
        messages = parse_inputs(row[field])
    except (TypeError, ValueError) as exc:
        raise InputError(f"--input: line {lineno}: {exc}") from None
    if not messages or not any(m["content"].strip() for m in messages):
        raise InputError(f"--input: line {lineno}: the request has no text")
    rid = row.get("id", lineno)
    if not isinstance(rid, (str, int)) or isinstance(rid, bool):
        raise InputError(f"--input: line {lineno}: id must be a string or an integer")
    return str(rid) if isinstance(rid, str) else str(int(rid)), messages


def _requests(path: Path, field: str, start: int) -> Iterator[tuple[int, int, str, Any]]:
    """(line number, byte offset after the line, id, request) from byte offset ``start``."""
    with path.open("rb") as fh:
        fh.seek(start)
        # line numbers count from the file's start
        lineno = 0 if start == 0 else _count_lines(path, start)
        offset = start
        for raw in fh:
            lineno += 1
            offset += len(raw)
            try:
                parsed = _parse_line(raw, lineno, field)
            except UnicodeDecodeError:
                raise InputError(f"--input: line {lineno} is not UTF-8") from None
            if parsed is not None:
                yield lineno, offset, parsed[0], parsed[1]


def _count_lines(path: Path, stop: int) -> int:
    with path.open("rb") as fh:
        return fh.read(stop).count(b"\n")


def _prefix_sha256(path: Path, stop: int) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        left = stop
        while left > 0:
            chunk = fh.read(min(left, 1 << 20))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------- checkpoints
def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        _failpoint("checkpoint")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself reaches the disk
    finally:
        os.close(dir_fd)


def _checkpoint_text(fields: dict[str, Any]) -> str:
    body = {"format": CHECKPOINT_FORMAT, "version": 1, **fields}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    body["checksum"] = "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
    return json.dumps(body, indent=1)


def _read_checkpoint(path: Path) -> dict[str, Any]:
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
        checksum = body.pop("checksum")
    except (json.JSONDecodeError, KeyError, AttributeError, TypeError):
        raise ValueError(f"--checkpoint: {path} is not a monitor checkpoint") from None
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    if checksum != "sha256:" + hashlib.sha256(canonical.encode()).hexdigest():
        raise ValueError(f"--checkpoint: {path} fails its checksum (edited or corrupt)")
    if body.get("format") != CHECKPOINT_FORMAT or body.get("version") != 1:
        raise ValueError(f"--checkpoint: {path} is not a version-1 monitor checkpoint")
    return dict(body)


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------- the command
def _check_options(args: argparse.Namespace) -> None:
    for name in ("checkpoint_every", "batch_size"):
        value = getattr(args, name)
        if value < 1:
            raise ValueError(f"--{name.replace('_', '-')}: must be positive, got {value}")
    if args.generate < 0:
        raise ValueError(f"--generate: must be non-negative, got {args.generate}")
    if args.max_tokens is not None and args.max_tokens < 1:
        raise ValueError(f"--max-tokens: must be positive, got {args.max_tokens}")
    for name in ("probes", "calibration", "input"):
        if not getattr(args, name).is_file():
            raise ValueError(f"--{name}: {getattr(args, name)} does not exist")


def _validate_input(path: Path, field: str) -> int:
    """Check every line before anything is written; the number of requests."""
    return sum(1 for _ in _requests(path, field, 0))


def _run(args: argparse.Namespace) -> int:
    _check_options(args)
    n_total = _validate_input(args.input, args.field)
    ckpt_path = args.checkpoint or args.out.with_name(args.out.name + ".checkpoint.json")
    config = {
        "probes_sha256": _sha256_file(args.probes),
        "calibration_sha256": _sha256_file(args.calibration),
        "field": args.field,
        "batch_size": args.batch_size,
        "padding": args.padding,
        "generate": args.generate,
        "max_tokens": args.max_tokens,
        "level": args.level,
    }
    resume: dict[str, Any] | None = None
    if ckpt_path.is_file():
        resume = _read_checkpoint(ckpt_path)
        if resume["config"] != config:
            changed = sorted(k for k in config if resume["config"].get(k) != config[k])
            raise ValueError(
                f"--checkpoint: {ckpt_path} belongs to a run with other options ({changed}); "
                "remove it and --out to start over"
            )
        if _prefix_sha256(args.input, resume["input_bytes"]) != resume["input_sha256"]:
            raise ValueError(
                f"--input: the first {resume['done']} requests differ from the checkpointed run"
            )
        if not args.out.is_file() or args.out.stat().st_size < resume["out_bytes"]:
            raise ValueError(f"--out: {args.out} is shorter than its checkpoint says")
    elif args.out.exists() and args.out.stat().st_size > 0:
        raise ValueError(f"--out: {args.out} exists without a checkpoint; remove it or move it")

    import torch
    from tqdm.auto import tqdm  # type: ignore[import-untyped]

    from ctd_stats import Delegator, DelegatorState, ThresholdCalibration

    from .live import LatentMonitor
    from .models import load_model
    from .probe_io import LatentProbes

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        calibration = ThresholdCalibration.from_json(args.calibration.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"--calibration: {exc}") from None
    try:
        probes = LatentProbes.from_json(args.probes.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"--probes: {exc}") from None
    loaded = load_model(args.model, device=args.device, revision=args.revision)
    try:
        monitor = LatentMonitor(
            loaded,
            probes,
            Delegator(calibration, level=args.level),
            padding=args.padding,
            max_tokens=args.max_tokens,
        )
    except ValueError as exc:
        raise ValueError(f"--probes: {exc}") from None

    if resume is None:
        state = monitor.init()
        done, out_bytes, in_bytes, in_sha = 0, 0, 0, hashlib.sha256()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_bytes(b"")
    else:
        state = DelegatorState.from_json(resume["state"])
        done, out_bytes, in_bytes = resume["done"], resume["out_bytes"], resume["input_bytes"]
        in_sha = hashlib.sha256()
        with args.input.open("rb") as fh:  # the running hash continues from the prefix
            in_sha.update(fh.read(in_bytes))
        if state.t != done:
            raise ValueError(f"--checkpoint: state has t={state.t} but done={done}")

    def checkpoint() -> None:
        _write_atomic(
            ckpt_path,
            _checkpoint_text(
                {
                    "config": config,
                    "done": done,
                    "out_bytes": out_bytes,
                    "input_bytes": in_bytes,
                    "input_sha256": in_sha.hexdigest(),
                    "state": state.to_json(),
                }
            ),
        )

    if resume is None:
        checkpoint()  # before any decision: the decisions file is always covered by one
    done_before = done
    bar = tqdm(total=n_total, initial=done, unit="req", desc="monitor", disable=args.no_progress)
    since = 0
    with args.out.open("r+b") as out:
        out.truncate(out_bytes)  # drop what was written after the last checkpoint
        out.seek(out_bytes)
        pending: list[tuple[int, str, Any]] = []
        hashed_to = in_bytes

        def flush_batch() -> None:
            nonlocal state, done, out_bytes, in_bytes, since, hashed_to
            res = monitor.decide(state, [p[2] for p in pending], generate=args.generate)
            _failpoint("batch")
            for (end, rid, _), d in zip(pending, res.decisions, strict=True):
                line = _decision_line(rid, d).encode("utf-8")
                half = len(line) // 2
                out.write(line[:half])
                out.flush()
                _failpoint("line")
                out.write(line[half:])
                out_bytes += len(line)
                in_bytes = end
            with args.input.open("rb") as fh:  # hash the input lines just decided
                fh.seek(hashed_to)
                in_sha.update(fh.read(in_bytes - hashed_to))
            hashed_to = in_bytes
            state = res.state
            done += len(pending)
            since += len(pending)
            bar.update(len(pending))
            pending.clear()
            if since >= args.checkpoint_every:
                out.flush()
                os.fsync(out.fileno())
                _failpoint("flush")
                checkpoint()
                since = 0

        for _lineno, end, rid, request in _requests(args.input, args.field, in_bytes):
            pending.append((end, rid, request))
            if len(pending) == args.batch_size:
                flush_batch()
        if pending:
            flush_batch()
        out.flush()
        os.fsync(out.fileno())
    if since:
        checkpoint()
    bar.close()
    rate = bar.format_dict.get("rate")
    print(
        f"monitor: {done - done_before} requests decided now, {done} of {n_total} in all"
        + (f", {rate:.2f} requests/s" if rate else ""),
        file=sys.stderr,
    )
    return 0


def _decision_line(rid: str, d: LiveDecision) -> str:
    row: dict[str, Any] = {
        "id": rid,
        "t": d.t,
        "probe": d.probe,
        "dv": d.dv,
        "delegated": d.delegated,
        "statistic": d.statistic,
        "alarm": d.alarm,
        "alarm_step": d.alarm_step,
        "n_tokens": d.n_tokens,
    }
    if d.text is not None:
        row["text"] = d.text
    return json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n"


def run(args: argparse.Namespace) -> int:
    """Run the command on parsed options (``add_arguments``); 0 on success, 2 on an error."""
    try:
        return _run(args)
    except ModuleNotFoundError as exc:
        print(f"error: {exc}: pip install 'ctd-stats[probes]'", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and :func:`run`; 0 on success, 2 on a usage or input error."""
    parser = argparse.ArgumentParser(
        prog="python -m probes monitor",
        description="Serve requests through a latent monitor (probes.live); resumable.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
