"""Side-by-side benchmarks of ctd_stats against the libraries a user would otherwise pick.

Run with ``nox -s bench`` (installs the ``bench`` extra: MAPIE 1.6, e-valuator) or directly::

    python bench/run_bench.py [--quick] [--only SECTION[,SECTION]]

Sections (``bench/sections/``, one module each): ltt, precision, grouped, app_d, monitors,
anytime, extraction, delegator, live, experts. The harness (timing, writers, environment info)
is ``bench/harness.py``. Every comparison runs both implementations in THIS process, on the SAME
inputs, interleaved, and reports medians over repeats and the ratio anchor / ours. Where the two
implementations answer the same question, their answers are compared; a disagreement that is not
explained aborts the run.

Writes ``bench/results/results.md`` and ``bench/results/results.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # harness, sections, bench_* modules

from harness import OPTIONS, RESULTS, Section, machine_info, write_results
from sections import (
    anytime,
    app_d,
    delegator,
    experts,
    extraction,
    grouped,
    live,
    ltt,
    monitors,
    precision,
)

SECTIONS: dict[str, Callable[[bool], Section | list[Section]]] = {
    "ltt": ltt.run,
    "precision": precision.run,
    "grouped": grouped.run,
    "app_d": app_d.run,
    "monitors": monitors.run,
    "anytime": anytime.run,
    "extraction": extraction.run,
    "delegator": delegator.run,
    "live": live.run,
    "experts": experts.run,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and sizes")
    parser.add_argument(
        "--only", default="", help="comma-separated subset of " + ",".join(SECTIONS)
    )
    parser.add_argument(
        "--quick-sections",
        default="",
        help="comma-separated sections to run in their quick form in a full run",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="output folder")
    parser.add_argument(
        "--evaluator-splits",
        type=int,
        default=0,
        help="splits on which to run the e-valuator package (default 2, 1 with --quick; "
        "10 = the whole protocol, tens of seconds per split)",
    )
    parser.add_argument("--extraction-worker", choices=("probes", "naive"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.extraction_worker:
        print(json.dumps(extraction.worker(args.extraction_worker, args.quick)))
        return 0
    OPTIONS["evaluator_splits"] = min(max(args.evaluator_splits, 0), 10)
    wanted = [s for s in args.only.split(",") if s] or list(SECTIONS)
    quick_only = {s for s in args.quick_sections.split(",") if s}
    unknown = (set(wanted) | quick_only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s): {sorted(unknown)}")
    sections: list[Section] = []
    t_all = time.perf_counter()
    for key in wanted:
        quick = args.quick or key in quick_only
        print(f"[bench] {key}{' (quick)' if quick else ''} ...", flush=True)
        t0 = time.perf_counter()
        got = SECTIONS[key](quick)
        secs = got if isinstance(got, list) else [got]
        secs[0].wall_s = time.perf_counter() - t0
        if quick and not args.quick:
            secs[0].notes.append("Run in its quick form (`--quick-sections`) to fit the budget.")
        print(f"[bench] {key} done in {secs[0].wall_s:.1f} s", flush=True)
        sections.extend(secs)
    meta = machine_info()
    meta["total_wall_s"] = time.perf_counter() - t_all
    meta["quick"] = args.quick
    meta["sections_quick"] = sorted(quick_only)
    if quick_only and not args.quick:
        meta["notes"] = [
            f"Full run, except {', '.join(sorted(quick_only))} in quick form (time budget)."
        ]
    cmd = "bench/run_bench.py" + "".join(f" {a}" for a in (argv or sys.argv[1:]))
    write_results(args.out, meta, sections, cmd)
    print(f"[bench] wrote {args.out / 'results.md'} ({meta['total_wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
