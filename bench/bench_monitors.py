"""Benchmark: the online-monitor protocol on verifier_scores/math (SPEC §7).

1. Times the reference protocol (10 random splits by problem, 20 % calibration,
   seeds 0..9, ε ∈ {0.05, 0.1, 0.2, 0.3, 0.4, 0.5}) for CRC + UCB alone and for all four monitors
   (CRC, UCB, e-valuator anytime, e-valuator PAC), median of repeated runs.
2. If the reference ``e-valuator`` package (``bench`` extra) and pandas are importable, runs it
   on the seed-42 80/20 split (Ville mode) next to ours and compares the per-step e-values and
   the alarm decisions (the reference fits scikit-learn's lbfgs with max_iter=200; ours is an
   exact Newton solver, so log M agrees to about 1e-2, and alarm decisions nearly everywhere).

Run: ``CTD_STATS_DATA_DIR=../shared/data python bench/bench_monitors.py`` (seconds; the
reference comparison adds about a minute: its ``apply`` loops over rows).
"""

from __future__ import annotations

import statistics
import time
import warnings

import numpy as np

from ctd_stats.online.eprocess import evaluator_monitor
from ctd_stats.online.monitor_metrics import aggregate, default_methods, run_monitor_experiment
from ctd_stats.online.monitors import NO_ALARM
from ctd_stats.online.trajectories import Trajectories, load_verifier_scores

EPS = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5]


def _time(fn: object, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def protocol(tr: Trajectories) -> None:
    methods = default_methods()
    fast = {k: methods[k] for k in ("crc", "ucb")}
    t_fast, _ = _time(lambda: run_monitor_experiment(tr, EPS, methods=fast), 7)
    t_all, res = _time(lambda: run_monitor_experiment(tr, EPS, methods=methods), 5)
    print(f"10 splits x {len(EPS)} eps, CRC + UCB:           {t_fast:.3f} s (median of 7)")
    print(f"10 splits x {len(EPS)} eps, all four monitors:   {t_all:.3f} s (median of 5)")
    summ = aggregate(res)  # type: ignore[arg-type]
    print("\nmean over splits (FA / power / delay):")
    for i, name in enumerate(summ.methods):
        cells = [
            f"{summ.false_alarm_rate.mean[i, j]:.3f}/{summ.power.mean[i, j]:.3f}/"
            f"{summ.detection_delay.mean[i, j]:.2f}"
            for j in range(len(EPS))
        ]
        print(f"  {name:18s}", "  ".join(cells))


def reference_comparison(tr: Trajectories) -> None:
    try:
        import evaluator  # the reference package (bench extra)
        import pandas as pd
    except ImportError:
        print("\nreference e-valuator / pandas not installed: comparison skipped")
        return
    n = tr.n_trajectories
    cal_idx = np.sort(np.random.default_rng(42).choice(n, size=int(0.8 * n), replace=False))
    test_idx = np.setdiff1d(np.arange(n), cal_idx)
    cal, test = tr.subset(cal_idx), tr.subset(test_idx)

    def frame(t: Trajectories) -> pd.DataFrame:
        series = [
            list(t.scores[t.offsets[i] : t.offsets[i] + k + 1])
            for i in range(t.n_trajectories)
            for k in range(int(t.lengths[i]))
        ]
        assert t.ids is not None and t.labels is not None
        return pd.DataFrame(
            {
                "uq_problem_idx": np.repeat(t.ids, t.lengths),
                "num_steps": t.step_index + 1,
                "judge_probability": t.scores,
                "solved": np.repeat(t.labels, t.lengths),
                "judge_probability_series": series,
            }
        )

    cal_df, test_df = frame(cal), frame(test)
    alphas = [0.05, 0.1, 0.2, 0.3]
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = evaluator.EValuator(model_type="logistic", mt_variant="Ville", alphas=alphas)
        ref.fit(cal_df)
        out = ref.apply(test_df)
    t_ref = time.perf_counter() - t0
    t0 = time.perf_counter()
    mon = evaluator_monitor(cal, alphas, threshold="ville")
    ours = mon.log_eprocess(test)
    first = mon.first_alarm_steps(test)
    t_ours = time.perf_counter() - t0
    ref_log = np.log(out["Ville_e_val"].to_numpy())
    print(f"\nreference e-valuator (Ville) fit+apply: {t_ref:.2f} s; ours: {t_ours:.3f} s")
    print(
        f"max |log M_ours - log M_ref| over {len(ours)} test steps: "
        f"{np.max(np.abs(ours - ref_log)):.2e}"
    )
    for j, a in enumerate(alphas):
        col = out[f"reject_Ville_alpha_{str(a).replace('.', '_')}"].to_numpy()
        ref_alarm = np.maximum.reduceat(col.astype(int), test.offsets[:-1]) == 1
        agree = np.mean(ref_alarm == (first[:, j] != NO_ALARM))
        print(f"  alpha={a}: trajectory-level alarm agreement {agree:.4f}")


def main() -> None:
    t0 = time.perf_counter()
    tr = load_verifier_scores("math")
    print(f"load verifier_scores/math ({tr.n_steps} step rows): {time.perf_counter() - t0:.2f} s")
    protocol(tr)
    reference_comparison(tr)


if __name__ == "__main__":
    main()
