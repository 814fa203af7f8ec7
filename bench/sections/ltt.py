"""LTT calibration: ctd_stats vs MAPIE 1.6 ``BinaryClassificationController``.

Both certify thresholds of "delegate iff score ≥ λ" for the delegation rate; ctd_stats is timed
via the counts API (one sort + searchsorted) and via the (n, m) loss matrix. The certified sets
are compared (identical, or explained by MAPIE's float rounding of the counts).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
from harness import DisagreementError, Section, fmt_ratio, fmt_time, interleaved, met, paragraphs
from numpy.typing import NDArray

if TYPE_CHECKING:
    from ctd_stats.fwer import Procedure

TARGET = 50.0  # MAPIE / ours (counts) at n = 1 000, m = 100

_MAPIE_FWER: dict[Procedure, str] = {
    "fixed_sequence": "fixed_sequence",
    "holm": "bonferroni_holm",
    "bonferroni": "bonferroni",
}


def run(quick: bool) -> Section:
    """LTT on the delegation rate ("predicted positive fraction") vs MAPIE 1.6."""
    from mapie.risk_control import BinaryClassificationController

    from ctd_stats import learn_then_test
    from ctd_stats.ltt import LTTResult

    sec = Section(
        key="ltt",
        title="1. LTT calibration: ctd_stats vs MAPIE 1.6 `BinaryClassificationController`",
        target=f"LTT on counts at n = 1,000, m = 100 ≥ {TARGET:.0f}× MAPIE (every FWER procedure);"
        " certified sets identical to MAPIE's (or explained by its float rounding of k)",
        columns=[
            ("n", "n"),
            ("m", "thresholds"),
            ("procedure", "FWER"),
            ("mapie", "MAPIE"),
            ("ours_losses", "ours (loss matrix)"),
            ("ours_counts", "ours (counts)"),
            ("ratio_losses", "MAPIE / ours (matrix)"),
            ("ratio_counts", "MAPIE / ours (counts)"),
            ("n_certified", "# certified (binomial)"),
            ("n_certified_hb", "# certified (ours, HB)"),
            ("k_flips", "MAPIE k rounded up"),
            ("identical", "sets identical"),
            ("explained", "agree (explained)"),
        ],
    )
    alpha, delta = 0.2, 0.1
    repeats = 3 if quick else 7
    rng = np.random.default_rng(20261122)

    def proba(x: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.column_stack([1.0 - x, x])

    for n in (1_000, 10_000):
        scores = rng.beta(2.0, 5.0, size=n)  # delegation scores in [0, 1]
        y_unused = np.zeros(n, dtype=np.int64)  # the delegation rate does not look at labels
        for m in (100, 1_000):
            grid = np.linspace(0.0, 1.0, m)
            for procedure, mapie_name in _MAPIE_FWER.items():
                holder: dict[str, Any] = {}

                def run_mapie(
                    grid: NDArray[np.float64] = grid,
                    mapie_name: str = mapie_name,
                    scores: NDArray[np.float64] = scores,
                    y: NDArray[np.int64] = y_unused,
                    holder: dict[str, Any] = holder,
                ) -> None:
                    c = BinaryClassificationController(
                        predict_function=proba,
                        risk="predicted_positive_fraction",
                        target_level=alpha,
                        confidence_level=1.0 - delta,
                        best_predict_param_choice="predicted_positive_fraction",
                        list_predict_params=grid,
                        fwer_method=mapie_name,
                    )
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        c.calibrate(scores, y)
                    holder["mapie"] = c

                def run_losses(
                    grid: NDArray[np.float64] = grid,
                    procedure: Procedure = procedure,
                    scores: NDArray[np.float64] = scores,
                    holder: dict[str, Any] = holder,
                ) -> None:
                    # Same predictions as MAPIE: "positive" (delegate) iff score ≥ λ.
                    losses = scores[:, None] >= grid[None, :]
                    holder["losses"] = learn_then_test(
                        losses,
                        alpha=alpha,
                        delta=delta,
                        procedure=procedure,
                        order="descending",
                    )

                def run_counts(
                    grid: NDArray[np.float64] = grid,
                    procedure: Procedure = procedure,
                    scores: NDArray[np.float64] = scores,
                    holder: dict[str, Any] = holder,
                ) -> None:
                    k = scores.size - np.searchsorted(np.sort(scores), grid, side="left")
                    holder["counts"] = learn_then_test(
                        counts=k,
                        n=scores.size,
                        alpha=alpha,
                        delta=delta,
                        procedure=procedure,
                        order="descending",
                    )

                t = interleaved(
                    {"mapie": run_mapie, "losses": run_losses, "counts": run_counts}, repeats
                )
                mapie_c = holder["mapie"]
                ours: LTTResult = holder["losses"]
                ours_counts: LTTResult = holder["counts"]
                mapie_set = np.isin(grid, mapie_c.valid_predict_params)
                if not np.array_equal(ours.certified, ours_counts.certified):
                    raise DisagreementError(f"ltt n={n} m={m} {procedure}: matrix vs counts")
                # MAPIE's k: it computes r̂ = Σ/n as a float and the binomial at ceil(n·r̂).
                k = (scores[:, None] >= grid[None, :]).sum(axis=0)
                k_mapie = np.ceil(n * (k / n)).astype(np.int64)
                flips = int(np.sum(k_mapie != k))
                identical = bool(np.array_equal(mapie_set, ours.certified))
                replay = learn_then_test(
                    counts=np.minimum(k_mapie, n),
                    n=n,
                    alpha=alpha,
                    delta=delta,
                    procedure=procedure,
                    order="descending",
                )
                explained = identical or bool(np.array_equal(replay.certified, mapie_set))
                if not explained:
                    raise DisagreementError(
                        f"ltt n={n} m={m} {procedure}: MAPIE certified {mapie_set.sum()}, "
                        f"ctd_stats {ours.certified.sum()}, not explained by k rounding"
                    )
                p_mapie = np.asarray(mapie_c.p_values, dtype=np.float64)[:, 0]
                hb = learn_then_test(
                    counts=k,
                    n=n,
                    alpha=alpha,
                    delta=delta,
                    method="hb",
                    procedure=procedure,
                    order="descending",
                )
                sec.rows.append(
                    {
                        "n": n,
                        "m": m,
                        "procedure": procedure,
                        "mapie": fmt_time(t["mapie"].median),
                        "ours_losses": fmt_time(t["losses"].median),
                        "ours_counts": fmt_time(t["counts"].median),
                        "ratio_losses": fmt_ratio(t["mapie"].median / t["losses"].median),
                        "ratio_counts": fmt_ratio(t["mapie"].median / t["counts"].median),
                        "n_certified": f"{int(ours.certified.sum())} / {int(mapie_set.sum())}",
                        "n_certified_hb": int(hb.certified.sum()),
                        "k_flips": flips,
                        "identical": identical,
                        "explained": explained,
                        "max_abs_pvalue_diff": float(np.max(np.abs(p_mapie - ours.pvalues))),
                        "timings": {k2: v.as_dict() for k2, v in t.items()},
                    }
                )
    sec.notes += paragraphs(
        f"""
        Task: certify thresholds λ of "delegate iff score ≥ λ" with P(delegation rate ≤ α) ≥
        1 − δ, α = {alpha}, δ = {delta}, grid = linspace(0, 1, m), scores ~ Beta(2, 5). MAPIE:
        risk `predicted_positive_fraction`, `target_level=α`, `confidence_level=1 − δ`, its
        `predict_function` returns [1 − s, s]; ctd_stats: `learn_then_test` with the exact
        binomial p-value, `order="descending"` (largest λ = smallest rate first). MAPIE
        predicts positive iff proba ≥ λ, while ctd_stats' delegation policies delegate iff
        score > τ (strict), so the benchmark builds ctd_stats' losses with ≥ to test exactly
        MAPIE's hypotheses; MAPIE also needs the score in [0, 1] (it thresholds a
        `predict_proba` column), so DV scores must be rescaled before MAPIE can use them.

        "ours (loss matrix)" builds the (n, m) 0/1 matrix and calls `learn_then_test(losses,
        ...)`; "ours (counts)" computes the m counts by one sort + `searchsorted` and calls
        `learn_then_test(counts=..., n=...)`. MAPIE's timing includes its own per-λ prediction
        and risk loop, the same work as building the loss matrix. The loss-matrix path is
        dominated by building and counting the (n, m) boolean matrix (O(nm)); the counts path
        needs O(n log n + m), and the statistics cost the same in both. MAPIE also has a fixed
        cost of a few milliseconds per calibration (controller set-up, per-λ Python loop),
        which dominates at n = 1 000, m = 100.

        p-value: MAPIE's controller calls its Hoeffding–Bentkus p-value with `binary=True`,
        which drops Bentkus' factor e; min(Hoeffding-KL, P(Bin(n, α) ≤ k)) is then the exact
        binomial tail (the binomial cdf never exceeds the Chernoff bound). So MAPIE's controller
        ≡ ctd_stats `method="binomial"`, not `method="hb"` (textbook HB keeps the e and
        certifies fewer λ: column "ours, HB").

        Count rounding: MAPIE evaluates the binomial at ceil(n · r̂) with r̂ = k/n a float,
        which rounds k up by one where n·(k/n) lands above k (column "MAPIE k rounded up").
        That is conservative (never invalid) but can drop a certified λ at the boundary;
        ctd_stats uses the integer counts. "agree (explained)" = identical, or identical once
        ctd_stats is fed MAPIE's rounded counts (checked; an unexplained difference aborts).

        Fixed sequence: MAPIE tests the grid in ascending index order, reversed when the
        empirical risk on the CALIBRATION data is non-increasing (`_check_risk_monotonicity`);
        a non-monotone empirical risk only triggers a warning and the direction of the mean
        slope is used, i.e. the order is chosen from the same data the p-values come from. For
        this risk the rate is non-increasing in λ by construction, so the order equals
        ctd_stats' explicit, data-independent `order="descending"`. MAPIE's single-start fixed
        sequence rejects p ≤ δ (ctd_stats' default `strict=False`).

        Holm: MAPIE runs the graphical (sequentially rejective) loop in Python, one argmin over
        the active set per rejection, O(m²); ctd_stats sorts once. Bonferroni is p ≤ δ/m in
        both.
        """
    )
    r_counts = [
        r["timings"]["mapie"]["median_s"] / r["timings"]["counts"]["median_s"] for r in sec.rows
    ]
    r_matrix = [
        r["timings"]["mapie"]["median_s"] / r["timings"]["losses"]["median_s"] for r in sec.rows
    ]
    at_target = [
        x for r, x in zip(sec.rows, r_counts, strict=True) if r["n"] == 1_000 and r["m"] == 100
    ]
    ok = min(at_target) >= TARGET
    n_ident = sum(bool(r["identical"]) for r in sec.rows)
    sec.headline.append(
        {
            "item": "1. LTT vs MAPIE 1.6",
            "comparison": f"{len(sec.rows)} cases: n × m × fixed-seq/Holm/Bonferroni",
            "ratio": f"counts API {fmt_ratio(min(r_counts))}–{fmt_ratio(max(r_counts))};"
            f" loss-matrix API {fmt_ratio(min(r_matrix))}–{fmt_ratio(max(r_matrix))}",
            "agreement": f"certified sets identical in {n_ident}/{len(sec.rows)}"
            + ("" if n_ident == len(sec.rows) else "; the others explained by MAPIE's rounding"),
            "target": f"counts at n = 1k, m = 100 ≥ {TARGET:.0f}×: {met(ok)}"
            f" ({', '.join(fmt_ratio(x) for x in at_target)} for fixed-seq / Holm / Bonferroni)",
        }
    )
    return sec
