"""The benchmark harness: timing, the section record, environment info, the markdown/JSON writers.

Timing: :func:`interleaved` runs every implementation of a comparison in the same process, on the
same inputs, alternating the order each round (A B, B A, ...), and reports medians and quartiles.
It is timeit-style: a case faster than ~2 ms is called ``number`` times in a row per sample
(``number`` from the warm-up call) and the sample is the mean per call. :func:`per_call` times a
streaming call (one input per call) over blocks of calls. The machine is shared and noisy, so
absolute times are only indicative while ratios measured this way are stable.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
for _p in (ROOT, ROOT / "bench"):  # run from a checkout without installing; sibling bench modules
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))
os.environ.setdefault("CTD_STATS_DATA_DIR", str(ROOT.parent / "shared" / "data"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

Row = dict[str, Any]
OPTIONS: dict[str, Any] = {}  # command-line options the sections read (set by run_bench.main)

TIMER_NOTE = (
    "Timing (bench/harness.py): both sides run in this process on the same inputs, interleaved"
    " (A B, B A, ...), medians over repeats; timeit-style, a call under 2 ms is repeated"
    " `number` times per sample (number from the warm-up call, at most 1000) and the sample is"
    " the mean per call, so µs-scale cases are not dominated by timer resolution."
)


class DisagreementError(AssertionError):
    """Two implementations that should agree did not, and the difference is not explained."""


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """Median and quartiles (seconds) of one callable over interleaved repeats."""

    median: float
    q1: float
    q3: float
    repeats: int

    def as_dict(self) -> dict[str, float | int]:
        return {"median_s": self.median, "q1_s": self.q1, "q3_s": self.q3, "repeats": self.repeats}


def _timing(samples: list[float]) -> Timing:
    q = np.quantile(samples, [0.25, 0.5, 0.75])
    return Timing(median=float(q[1]), q1=float(q[0]), q3=float(q[2]), repeats=len(samples))


def interleaved(
    cases: dict[str, Callable[[], object]], repeats: int, *, warmup: int = 1
) -> dict[str, Timing]:
    """Time every case ``repeats`` times, alternating the order of the cases each round.

    Like ``timeit``, a case faster than ~2 ms is called ``number`` times in a row per sample
    (``number`` from the warm-up call) and the sample is the mean per call: one call of a few
    tens of µs is otherwise dominated by timer resolution and by the cache misses the other
    case just caused. Cases of 2 ms or more (the anchors here) are called once per sample.
    ``warmup=0`` skips the warm-up call (slow cases) and calls every case once per sample.
    """
    names = list(cases)
    samples: dict[str, list[float]] = {k: [] for k in names}
    number: dict[str, int] = {k: 1 for k in names}
    if warmup > 0:
        for k in names:
            t0 = time.perf_counter()
            for _ in range(warmup):
                cases[k]()
            once = (time.perf_counter() - t0) / warmup
            number[k] = max(1, min(1000, int(2e-3 / max(once, 1e-9))))
    for r in range(repeats):
        for k in names if r % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            for _ in range(number[k]):
                cases[k]()
            samples[k].append((time.perf_counter() - t0) / number[k])
    return {k: _timing(v) for k, v in samples.items()}


def per_call(fn: Callable[[], object], calls: int, repeats: int) -> Timing:
    """Median seconds per call of ``fn`` over ``repeats`` blocks of ``calls`` calls."""
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - t0) / calls)
    return _timing(samples)


def single_runs(fn: Callable[[], object], repeats: int) -> Timing:
    """Median of ``repeats`` single calls (slow cases without an interleaved partner)."""
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return _timing(samples)


def fmt_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def fmt_ratio(r: float) -> str:
    if not math.isfinite(r):
        return "–"
    return f"{r:.0f}×" if r >= 100 else f"{r:.1f}×"


def met(ok: bool) -> str:
    return "met" if ok else "**NOT met**"


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


@dataclass
class Section:
    """One benchmark item: a table (``columns`` from ``rows``), its target, notes."""

    key: str
    title: str
    columns: list[tuple[str, str]]  # (row key, header)
    target: str = ""  # the section's target, stated under its title
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None
    headline: list[Row] = field(default_factory=list)  # rows of the summary table
    wall_s: float = 0.0

    def markdown(self) -> str:
        lines = [f"## {self.title}", ""]
        if self.target:
            lines += [f"**Target:** {self.target}", ""]
        if self.skipped:
            lines += [f"**Skipped:** {self.skipped}", ""]
        if self.rows:
            lines.append("| " + " | ".join(h for _, h in self.columns) + " |")
            lines.append("|" + "|".join("---" for _ in self.columns) + "|")
            for row in self.rows:
                lines.append("| " + " | ".join(cell(row.get(k)) for k, _ in self.columns) + " |")
            lines.append("")
        lines += [f"- {note}" for note in self.notes]
        if self.notes:
            lines.append("")
        if self.wall_s > 0:
            lines += [f"_Section wall time: {self.wall_s:.1f} s._", ""]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "target": self.target,
            "rows": self.rows,
            "notes": self.notes,
            "skipped": self.skipped,
            "headline": self.headline,
            "wall_s": self.wall_s,
        }


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "**NO**"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs of ``text``, each joined into one line."""
    return [" ".join(p.split()) for p in text.strip().split("\n\n") if p.strip()]


# --------------------------------------------------------------------------------------------
# Environment and writers
# --------------------------------------------------------------------------------------------

VERSIONS = (
    "ctd-stats",
    "numpy",
    "scipy",
    "mapie",
    "e-valuator",
    "pandas",
    "scikit-learn",
    "torch",
    "transformers",
)


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = ""
    try:
        load = os.getloadavg()
    except OSError:
        load = (math.nan, math.nan, math.nan)
    return {
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "git_commit": commit,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in load],
        "gpu": "none (no GPU used by this run; bench/gpu_extraction.py is the GPU script)",
        "versions": {d: _version(d) for d in VERSIONS},
    }


SUMMARY_COLUMNS = [
    ("item", "item"),
    ("comparison", "what"),
    ("ratio", "ratio (anchor / ctd_stats time unless stated)"),
    ("agreement", "answers"),
    ("target", "target"),
]


def render(meta: dict[str, Any], sections: list[Section], command: str) -> str:
    v = meta["versions"]
    head = [
        "# Benchmarks: ctd_stats vs the anchor libraries",
        "",
        f"Generated by `{command}` (`nox -s bench`) on {meta['date_utc']}, commit"
        f" `{meta['git_commit']}`, in {meta['total_wall_s']:.0f} s.",
        "",
        f"Machine: {meta['cpu']}, {meta['cpu_count']} CPUs, load average"
        f" {meta['load_average']} at the end of the run; GPU: {meta['gpu']}. Python"
        f" {meta['python']}, ctd_stats {v['ctd-stats']}, numpy {v['numpy']}, scipy {v['scipy']},"
        f" MAPIE {v['mapie']}, e-valuator {v['e-valuator']}, torch {v['torch']}, transformers"
        f" {v['transformers']}.",
        "",
        "The machine was shared with other jobs. Read the ratios (measured side by side in this"
        " run), not the absolute times. " + TIMER_NOTE,
        "",
    ]
    if meta.get("notes"):
        head += [str(n) for n in meta["notes"]] + [""]
    summary = [r for sec in sections for r in sec.headline]
    if summary:
        head += ["## Summary", ""]
        head.append("| " + " | ".join(h for _, h in SUMMARY_COLUMNS) + " |")
        head.append("|" + "|".join("---" for _ in SUMMARY_COLUMNS) + "|")
        head += [
            "| " + " | ".join(cell(r.get(k)) for k, _ in SUMMARY_COLUMNS) + " |" for r in summary
        ]
        head.append("")
    return "\n".join(head) + "\n" + "\n".join(s.markdown() for s in sections)


def _json_default(o: object) -> object:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, float) and not math.isfinite(o):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_results(out: Path, meta: dict[str, Any], sections: list[Section], command: str) -> None:
    """Write ``results.md`` and ``results.json`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(render(meta, sections, command), encoding="utf-8")
    payload = {"meta": meta, "sections": {s.key: s.as_dict() for s in sections}}
    (out / "results.json").write_text(
        json.dumps(payload, indent=2, default=_json_default) + "\n", encoding="utf-8"
    )
