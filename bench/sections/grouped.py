"""Grouped Learn-then-Test: one call over G groups vs a Python loop of ungrouped LTT calls.

Both certify, for every group, thresholds of "delegate iff score > λ" whose group delegation
rate is at most the group's cap. The grouped call counts with one sort per group
(`group_counts_above`) and runs one p-value and FWER kernel call per group; the loop selects
each group's rows with a boolean mask, sorts them and calls `learn_then_test` on its counts.
The certified sets are asserted identical.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from harness import DisagreementError, Section, fmt_ratio, fmt_time, interleaved, met, paragraphs

TARGET_S = 1.0  # grouped LTT, G = 100, n = 10^6, m = 1,000


def run(quick: bool) -> Section:
    """Grouped LTT (per group, simultaneous, shared) vs a loop of ungrouped LTT per group."""
    from ctd_stats import learn_then_test
    from ctd_stats.grouped import group_counts_above, learn_then_test_grouped

    sec = Section(
        key="grouped",
        title="Grouped LTT: one call over G groups vs a Python loop of `learn_then_test`",
        target=f"G = 100 groups, n = 10^6 rows, m = 1,000 thresholds in < {TARGET_S:.0f} s "
        "(counting included); same certified sets as the loop",
        columns=[
            ("G", "groups"),
            ("n", "n"),
            ("m", "thresholds"),
            ("mode", "mode"),
            ("grouped", "grouped (count + certify)"),
            ("certify", "of which certify"),
            ("loop", "loop of LTT"),
            ("ratio", "loop / grouped"),
            ("n_found", "groups certified"),
            ("same", "same answers"),
        ],
    )
    delta = 0.1
    repeats = 3 if quick else 7
    rng = np.random.default_rng(20260318)
    sizes = [(10, 100_000, 100), (100, 1_000_000, 1_000)]
    for n_groups, n, m in sizes:
        groups = rng.integers(0, n_groups, n)
        shape = rng.uniform(0.5, 2.0, n_groups)
        scores = rng.uniform(size=n) ** shape[groups]  # group rates 1 − λ^{1/b_g}
        grid = np.linspace(0.0, 1.0, m)
        caps = rng.uniform(0.05, 0.3, n_groups)
        for mode in ("per_group", "simultaneous", "shared"):
            holder: dict[str, Any] = {}
            level = delta / n_groups if mode == "simultaneous" else delta

            def grouped(
                scores: Any = scores,
                groups: Any = groups,
                grid: Any = grid,
                caps: Any = caps,
                mode: Any = mode,
                holder: dict[str, Any] = holder,
            ) -> None:
                c = group_counts_above(scores, groups=groups, grid=grid)
                holder["counts"] = c
                holder["grouped"] = learn_then_test_grouped(
                    counts=c.counts,
                    n=c.n,
                    groups=c.groups,
                    alpha=caps,
                    delta=delta,
                    order="descending",
                    mode=mode,
                )

            def loop(
                scores: Any = scores,
                groups: Any = groups,
                grid: Any = grid,
                caps: Any = caps,
                mode: Any = mode,
                level: float = level,
                holder: dict[str, Any] = holder,
            ) -> None:
                if mode == "shared":  # caps as risks of one LTT call on (G, m) counts
                    k = np.empty((caps.size, grid.size), dtype=np.int64)
                    n_g = np.empty(caps.size, dtype=np.int64)
                    for g in range(caps.size):
                        s = np.sort(scores[groups == g])
                        k[g], n_g[g] = s.size - np.searchsorted(s, grid, side="right"), s.size
                    res = learn_then_test(
                        counts=k,
                        n=np.broadcast_to(n_g[:, None], k.shape),
                        alpha=caps,
                        delta=delta,
                        order="descending",
                    )
                    holder["loop"] = [res.certified] * caps.size
                    return
                out = []
                for g in range(caps.size):
                    s = np.sort(scores[groups == g])
                    k1 = s.size - np.searchsorted(s, grid, side="right")
                    out.append(
                        learn_then_test(
                            counts=k1,
                            n=s.size,
                            alpha=float(caps[g]),
                            delta=level,
                            order="descending",
                        ).certified
                    )
                holder["loop"] = out

            t = interleaved({"grouped": grouped, "loop": loop}, repeats, warmup=1)
            c = holder["counts"]

            def certify(c: Any = c, caps: Any = caps, mode: Any = mode) -> None:
                learn_then_test_grouped(
                    counts=c.counts,
                    n=c.n,
                    alpha=caps,
                    delta=delta,
                    order="descending",
                    mode=mode,
                )

            t_cert = interleaved({"certify": certify}, repeats)
            res = holder["grouped"]
            same = all(np.array_equal(res.certified[g], holder["loop"][g]) for g in range(n_groups))
            if not same:
                raise DisagreementError(f"grouped G={n_groups} n={n} m={m} {mode}: loop differs")
            sec.rows.append(
                {
                    "G": n_groups,
                    "n": n,
                    "m": m,
                    "mode": mode,
                    "grouped": fmt_time(t["grouped"].median),
                    "certify": fmt_time(t_cert["certify"].median),
                    "loop": fmt_time(t["loop"].median),
                    "ratio": fmt_ratio(t["loop"].median / t["grouped"].median),
                    "n_found": f"{int(res.found.sum())} / {n_groups}",
                    "same": same,
                    "timings": {
                        "grouped": t["grouped"].as_dict(),
                        "loop": t["loop"].as_dict(),
                        "certify": t_cert["certify"].as_dict(),
                    },
                }
            )
    sec.notes += paragraphs(
        """
        Data: each row's group uniform over G; group g's scores U^{b_g}, b_g ~ U(0.5, 2), so its
        delegation rate at λ is 1 − λ^{1/b_g}; caps α_g ~ U(0.05, 0.3), δ = 0.1, grid
        linspace(0, 1, m), binomial p-values, fixed sequence from the largest λ. "grouped"
        times `group_counts_above` (one stable argsort of the group labels, then one sort of
        each group's scores and a `searchsorted` of the grid) plus `learn_then_test_grouped`
        on the (G, m) counts; "of which certify" is the second call alone (G p-value and FWER
        kernel calls on m values each). The loop masks each group's rows (G passes over n),
        sorts them and calls `learn_then_test` per group at δ (per group) or δ/G
        (simultaneous, Bonferroni); in shared mode it builds the same (G, m) counts and makes
        one `learn_then_test` call with the caps as risks (max p-value). Certified sets
        identical in every case (an assertion).
        """
    )
    big = [r for r in sec.rows if r["G"] == 100]
    worst = max(r["timings"]["grouped"]["median_s"] for r in big)
    sec.headline.append(
        {
            "item": "Grouped LTT",
            "comparison": "G groups in one call vs a Python loop of learn_then_test",
            "ratio": ", ".join(f"{r['mode']} {r['ratio']}" for r in big),
            "agreement": "certified sets identical in "
            f"{sum(bool(r['same']) for r in sec.rows)}/{len(sec.rows)}",
            "target": f"G = 100, n = 10^6, m = 1,000 < {TARGET_S:.0f} s: {met(worst < TARGET_S)}"
            f" (slowest mode {fmt_time(worst)})",
        }
    )
    return sec
