"""Benchmark: vectorised CTD code vs a straightforward per-threshold Python-loop implementation.

Measures (1) the App. D budget-guarantee validation, 500 re-splits × 20 budgets × 2 experts
(strong and weak simulated regimes, 1586 rows like the paper's test set), and (2) the full sweep
(every method × every budget × batch sizes 32/64/128). For each, a plain loop implementation
written here from the definitions is run on the same inputs; the script checks that both agree
exactly (chosen thresholds, realised budgets, metrics) and prints the speed-up.

Run: ``python bench/bench_cascade.py`` (about a minute, dominated by the loop versions).
"""

from __future__ import annotations

import math
import time

import numpy as np
from scipy import stats

from ctd_stats.cascade.budget_validation import validate_budget_guarantee
from ctd_stats.cascade.delegation import budget_grid, sweep, threshold_grid, topk_budgets
from ctd_stats.cascade.metrics import CascadeTable
from ctd_stats.cascade.simulation import SimulationParameters, simulate_cascade

DELTA = 0.1


# ------------------------------------------------------------------------------------------
# Loop reference implementations (one threshold, one re-split, one budget at a time)


def loop_auroc(y: np.ndarray, s: np.ndarray) -> float:
    ranks = stats.rankdata(s)
    n1 = int(y.sum())
    n0 = y.size - n1
    return float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def loop_perf(d, p, e, y, tau, performance):  # type: ignore[no-untyped-def]
    s = np.where(d > tau, e, p)
    if performance == "accuracy":
        return 1.0 - float(np.mean((s >= 0.5) == (y == 1)))
    return 1.0 - loop_auroc(y, s)


def loop_front(budget: list[float], perf: list[float]) -> list[bool]:
    m = len(budget)
    keep = []
    for i in range(m):
        dom = False
        for j in range(m):
            if (
                budget[j] <= budget[i]
                and perf[j] <= perf[i]
                and (budget[j] < budget[i] or perf[j] < perf[i])
            ):
                dom = True
                break
        keep.append(not dom)
    return keep if any(keep) else [True] * m


def loop_pareto_ltt(d_opt, p_opt, e_opt, y_opt, d_ht, grid, alpha, performance):  # type: ignore[no-untyped-def]
    m = len(grid)
    budget = [float(np.mean(d_opt > t)) for t in grid]
    perf = [loop_perf(d_opt, p_opt, e_opt, y_opt, t, performance) for t in grid]
    front = loop_front(budget, perf)
    certified = []
    for j in range(m - 1, -1, -1):
        if not front[j]:
            continue
        k = int(np.sum(d_ht > grid[j]))
        pv = 0.0 if alpha >= 1 else float(stats.binom.cdf(k, d_ht.size, alpha))
        if pv <= DELTA:
            certified.append(j)
        else:
            break
    if not certified:
        return -1
    best = certified[0]
    for j in certified:
        if perf[j] < perf[best]:
            best = j
    return best


def loop_budget_only(d_cal, grid, alpha):  # type: ignore[no-untyped-def]
    chosen = -1
    for j in range(len(grid) - 1, -1, -1):
        k = int(np.sum(d_cal > grid[j]))
        pv = 0.0 if alpha >= 1 else float(stats.binom.cdf(k, d_cal.size, alpha))
        if pv <= DELTA:
            chosen = j
        else:
            break
    return chosen


def loop_app_d(table: CascadeTable, alphas, n_resplits, grid):  # type: ignore[no-untyped-def]
    n = table.n
    n_cal = int(0.5 * n)
    n_opt = int(0.3 * n_cal)
    bo = np.full((len(alphas), n_resplits), np.nan)
    pa = np.full((len(alphas), n_resplits), np.nan)
    for r in range(n_resplits):
        perm = np.random.default_rng(42 + r).permutation(n)
        cal, ev = perm[:n_cal], perm[n_cal:]
        sub = np.random.default_rng(42 + r).permutation(n_cal)
        opt, ht = cal[sub[:n_opt]], cal[sub[n_opt:]]
        for i, a in enumerate(alphas):
            j = loop_budget_only(table.dv[cal], grid, a)
            bo[i, r] = 0.0 if j < 0 else float(np.mean(table.dv[ev] > grid[j]))
            j = loop_pareto_ltt(
                table.dv[opt], table.probe[opt], table.expert[opt], table.labels[opt],
                table.dv[ht], grid, a, "accuracy",
            )  # fmt: skip
            pa[i, r] = 0.0 if j < 0 else float(np.mean(table.dv[ev] > grid[j]))
    return bo, pa


def loop_topk(scores: np.ndarray, b: int, k: int, window: str) -> np.ndarray:
    mask = np.zeros(scores.size, dtype=bool)
    for start in range(0, scores.size, b):
        chunk = scores[start : start + b]
        length = chunk.size
        kk = min(k, length)
        if window == "top":
            idx = np.argsort(-chunk, kind="stable")[:kk]
        else:
            lo = max(0, length // 2 - kk // 2)
            hi = min(length, lo + kk)
            lo = hi - kk
            idx = np.argsort(chunk, kind="stable")[lo:hi]
        mask[start + idx] = True
    return mask


def loop_sweep(
    table: CascadeTable, grid: np.ndarray
) -> dict[tuple[str, int | None, float], tuple[float, float, float]]:
    """CTD, budget-only LTT, global oracle and the three top-k baselines, one point at a time."""
    n = table.n
    perm = np.random.default_rng(42).permutation(n)
    cal, ev = perm[: int(0.5 * n)], perm[int(0.5 * n) :]
    sub = np.random.default_rng(42).permutation(cal.size)
    opt, ht = cal[sub[: int(0.3 * cal.size)]], cal[sub[int(0.3 * cal.size) :]]
    p, e, y, d = table.probe[ev], table.expert[ev], table.labels[ev], table.dv[ev]
    v = (2 * y - 1) * (e - p)
    out = {}

    def metrics(mask: np.ndarray) -> tuple[float, float, float]:
        s = np.where(mask, e, p)
        return float(mask.mean()), loop_auroc(y, s), float(np.mean((s >= 0.5) == (y == 1)))

    for a in budget_grid():
        j = loop_pareto_ltt(
            table.dv[opt], table.probe[opt], table.expert[opt], table.labels[opt],
            table.dv[ht], grid, a, "accuracy",
        )  # fmt: skip
        out[("CTD", None, float(a))] = metrics(d > grid[j] if j >= 0 else np.zeros(d.size, bool))
        j = loop_budget_only(table.dv[cal], grid, a)
        out[("Budget-only LTT", None, float(a))] = metrics(
            d > grid[j] if j >= 0 else np.zeros(d.size, bool)
        )
        k = min(math.ceil(round(a * d.size, 9)), int(np.sum(v > 0)))
        mask = np.zeros(d.size, bool)
        mask[np.argsort(-v, kind="stable")[:k]] = True
        out[("Global oracle", None, float(a))] = metrics(mask)
    for b in (32, 64, 128):
        for k in topk_budgets(b):
            for name, sig, window in (
                ("Unc. top-k", p, "median"),
                ("DV top-k", d, "top"),
                ("Oracle top-k", v, "top"),
            ):
                out[(name, b, float(k / b))] = metrics(loop_topk(sig, b, int(k), window))
    return out


# ------------------------------------------------------------------------------------------


def main() -> None:
    tables = {
        "strong": simulate_cascade(1586, params=SimulationParameters.strong_expert(), seed=21),
        "weak": simulate_cascade(1586, params=SimulationParameters.weak_expert(), seed=21),
    }
    alphas = budget_grid()
    validate_budget_guarantee(tables["strong"], n_resplits=3)  # warm-up (imports, caches)

    print("== App. D: 500 re-splits x 20 budgets x 2 experts ==")
    t0 = time.perf_counter()
    vec = {
        k: validate_budget_guarantee(t, alphas=alphas, n_resplits=500) for k, t in tables.items()
    }
    t_vec = time.perf_counter() - t0
    print(f"vectorised: {t_vec:.3f} s")
    n_loop = 50
    t0 = time.perf_counter()
    agree = True
    for k, t in tables.items():
        bo, pa = loop_app_d(t, alphas, n_loop, vec[k].grid)
        agree &= np.allclose(bo, vec[k].budget_only.realised_budget[:, :n_loop])
        agree &= np.allclose(pa, vec[k].pareto.realised_budget[:, :n_loop])
    t_loop = (time.perf_counter() - t0) * (500 / n_loop)
    print(f"loop (timed on {n_loop} re-splits, scaled to 500): {t_loop:.1f} s")
    print(f"agree on the first {n_loop} re-splits: {agree}; speed-up x{t_loop / t_vec:.0f}")
    for k, r in vec.items():
        i = int(np.argmin(np.abs(r.alphas - 0.3)))
        bo, pa, pi = r.budget_only, r.pareto, r.plug_in
        print(
            f"  {k}: alpha=0.3 violation rate (eval half) budget-only "
            f"{bo.violation_rate[i]:.3f}, Pareto {pa.violation_rate[i]:.3f}, "
            f"plug-in {pi.violation_rate[i]:.3f}; population violations budget-only "
            f"{bo.population_violations[i]}, Pareto {pa.population_violations[i]}, "
            f"plug-in {pi.population_violations[i]} (tolerance {r.tolerance})"
        )

    print("== Full sweep (all methods x 20 budgets x B in 32/64/128) ==")
    for k, t in tables.items():
        grid = threshold_grid(t.dv)
        res = sweep(t)  # warm-up
        t_vec = math.inf
        for _ in range(3):  # best of 3
            t0 = time.perf_counter()
            res = sweep(t)
            t_vec = min(t_vec, time.perf_counter() - t0)
        t0 = time.perf_counter()
        ref = loop_sweep(t, grid)
        t_loop = time.perf_counter() - t0
        ok = True
        for pt in res.points:
            key = (pt.method, pt.batch_size, pt.alpha)
            if key in ref:
                ok &= np.allclose((pt.budget, pt.auroc, pt.accuracy), ref[key])
        print(
            f"{k}: vectorised {t_vec:.3f} s (incl. Unc. calibrated, FAIC), loop {t_loop:.2f} s"
            f" (CTD, budget-only, oracles, top-k), agree: {ok}, speed-up x{t_loop / t_vec:.1f}"
        )


if __name__ == "__main__":
    main()
