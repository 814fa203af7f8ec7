"""Precision control: ctd_stats vs MAPIE 1.6 ``BinaryClassificationController(risk="precision")``.

Both certify thresholds λ of "flag iff score ≥ λ" for 1 − precision = P(negative | flagged) ≤ α,
a conditional risk whose sample size (the flagged inputs) changes with λ. ctd_stats counts the
flagged inputs and the false alarms among them per λ (:func:`ctd_stats.risks.conditional_risk`)
and calls ``learn_then_test(counts=k, n=n_per_threshold)``. The certified sets are compared and
every difference is explained (MAPIE's float rounding of k, or its data-chosen sequence order).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from harness import DisagreementError, Section, fmt_ratio, fmt_time, interleaved, met, paragraphs
from numpy.typing import NDArray

if TYPE_CHECKING:
    from ctd_stats.fwer import Procedure

TARGET = 50.0  # MAPIE / ours at n = 1 000, m = 100

_MAPIE_FWER: dict[Procedure, str] = {
    "holm": "bonferroni_holm",
    "bonferroni": "bonferroni",
    "fixed_sequence": "fixed_sequence",
}


def _mapie_direction(
    k: NDArray[np.int64], n: NDArray[np.int64]
) -> Literal["ascending", "descending"]:
    """The fixed-sequence order MAPIE 1.6 picks from the calibration risks (documented rule).

    Its empirical 1 − precision is 1 where nothing is flagged; the grid is tested in ascending
    order if the risk never decreases (tolerance 1e-6), reversed if it never increases, and
    otherwise in the direction of the mean slope. The rule is restated here to explain MAPIE's
    answers; ctd_stats never derives an order from the tested data.
    """
    risk = np.where(n > 0, k / np.maximum(n, 1), 1.0)
    diffs = np.diff(risk)
    if np.all(diffs >= -1e-6):
        return "ascending"
    if np.all(diffs <= 1e-6):
        return "descending"
    return "ascending" if np.mean(diffs) > 0 else "descending"


def run(quick: bool) -> Section:
    """Alarm precision with one sample size per threshold vs MAPIE 1.6."""
    from mapie.risk_control import BinaryClassificationController

    sec = Section(
        key="precision",
        title="Precision control: ctd_stats vs MAPIE 1.6 `BinaryClassificationController`",
        target=f"conditional-risk LTT at n = 1,000, m = 100 ≥ {TARGET:.0f}× MAPIE (Holm);"
        " every difference in the certified sets explained",
        columns=[
            ("n", "n"),
            ("m", "thresholds"),
            ("grid", "grid"),
            ("procedure", "FWER"),
            ("mapie", "MAPIE"),
            ("ours", "ours"),
            ("ratio", "MAPIE / ours"),
            ("floor", "floor"),
            ("floor_ratio", "MAPIE / floor"),
            ("n_certified", "# certified (ours / MAPIE)"),
            ("n_certified_hb", "# certified (ours, HB with e)"),
            ("differences", "grid points that differ"),
            ("by_rounding", "of which k rounding"),
            ("by_order", "of which data-chosen order"),
            ("by_nan", "of which NaN stop"),
            ("mapie_order", "MAPIE's order"),
        ],
    )
    alpha, delta = 0.2, 0.1
    repeats = 3 if quick else 7
    rng = np.random.default_rng(20261123)
    cases = [(1_000, 100)] if quick else [(1_000, 100), (10_000, 100), (1_000, 1_000)]

    for n, m in cases:
        unsafe = (rng.uniform(size=n) < 0.3).astype(np.int64)
        scores = np.where(unsafe == 1, rng.beta(4.0, 2.0, n), rng.beta(2.0, 4.0, n))
        grids = {
            # MAPIE's default grid: its top thresholds flag no input at all.
            "0–0.99": np.linspace(0.0, 0.99, m),
            # Up to the 5th-largest score: every threshold flags at least 5 inputs.
            "0–s(5)": np.linspace(0.0, float(np.sort(scores)[-5]), m),
        }
        for grid_name, grid in grids.items():
            for procedure, mapie_name in _MAPIE_FWER.items():
                sec.rows.append(
                    _compare(
                        BinaryClassificationController,
                        scores,
                        unsafe,
                        grid,
                        grid_name,
                        procedure,
                        mapie_name,
                        alpha,
                        delta,
                        repeats,
                    )
                )

    sec.notes += paragraphs(
        f"""
        Task: certify thresholds λ of "flag iff score ≥ λ" with P(1 − precision(λ) ≤ α) ≥ 1 − δ,
        α = {alpha}, δ = {delta}; grid "0–0.99" = linspace(0, 0.99, m) (MAPIE's default, whose
        top thresholds flag nothing), grid "0–s(5)" = linspace(0, 5th-largest score, m) (every
        threshold flags ≥ 5 inputs); 30 % positives (unsafe) with
        scores ~ Beta(4, 2), negatives ~ Beta(2, 4). 1 − precision(λ) = P(negative | flagged
        at λ) averages over the flagged inputs only, so each λ has its own sample size n_λ.
        MAPIE: risk `"precision"`, `target_level = 1 − α`, `confidence_level = 1 − δ`, its
        `predict_function` returns [1 − s, s]; ctd_stats: `conditional_risk(labels, scores,
        risk="precision", grid=...)` (each score's place in the grid, one bincount per class,
        cumulative counts; inputs validated) and its `.certify(alpha=..., delta=...,
        procedure=...)` (Learn-then-Test on those counts in the natural order, flag least first;
        checked equal to `learn_then_test(counts=k, n=n_per_threshold, order="descending")`),
        timed together, interleaved with MAPIE on the same data in one process (three warm-up
        calls each). MAPIE flags
        proba ≥ λ and ctd_stats score > λ, so ctd_stats is given nextafter(λ, −∞): the same
        rule exactly.

        p-values: MAPIE's controller calls its Hoeffding–Bentkus p-value with `binary=True`,
        which drops Bentkus' factor e, so min(Hoeffding-KL, P(Bin(n_λ, α) ≤ k)) is the exact
        binomial tail: MAPIE's controller ≡ ctd_stats `method="binomial"` with n = n_λ.
        Textbook HB (with e) certifies fewer λ (column "ours, HB with e"). Where nothing is
        flagged, MAPIE sets the risk to 1 and n to −1 (a NaN p-value, never rejected);
        ctd_stats gives p = 1 (never certified): the same decision.

        Differences, each explained and checked by replaying MAPIE's choices with ctd_stats
        (an unexplained one aborts the benchmark): (1) k rounding — MAPIE evaluates the
        binomial at ceil(n_λ · r̂) with r̂ = 1 − (correct / n_λ) computed in floating point,
        which rounds k up by one where the float lands above the integer (conservative, never
        invalid, but it can drop a λ at the boundary); ctd_stats uses the integer counts.
        (2) Fixed-sequence order — MAPIE tests the grid ascending, or reversed when the
        calibration risk is non-increasing, and when it is neither (always, for precision: the
        risk is noisy where few inputs are flagged) it warns and follows the sign of the mean
        slope of the calibration risks: the order is chosen from the data it then tests, which
        voids the guarantee (SPEC trap; `tests/test_validity_conditional.py` shows the
        violation rate of that rule above δ). ctd_stats tests from the largest λ down, fixed in
        advance, and stops at once when the first λ flags too few inputs — for precision use
        Holm, fallback or `procedure="split_fixed_sequence"`. (3) NaN stop — where a threshold
        flags nothing MAPIE's p-value is NaN, and its Holm (a graphical loop picking the
        smallest p-value) picks the NaN and rejects nothing at all, on MAPIE's own default grid;
        ctd_stats gives such a threshold p = 1 and certifies the rest (a NaN p-value is an
        error in ctd_stats, never a silent stop).

        Floor: the compiled calls any exact answer needs, timed alone in the same run (each
        score placed in the grid by `searchsorted`, one `bincount`, cumulative counts, scipy's
        binomial-cdf ufunc on the m pairs (k, n), the FWER step) with no input check, no
        testing order and no result object; its certified set is checked equal to ours. MAPIE /
        floor is what this algorithm reaches with nothing but its compiled calls, every p-value
        computed as scipy computes it; the gap between floor and ours is validation at the
        public edge and the result objects (some twenty small numpy calls of about 1 µs each).
        """
    )
    at_target = [
        r["timings"]["mapie"]["median_s"] / r["timings"]["ours"]["median_s"]
        for r in sec.rows
        if r["n"] == 1_000 and r["m"] == 100
    ]
    holm_at_target = [
        r["timings"]["mapie"]["median_s"] / r["timings"]["ours"]["median_s"]
        for r in sec.rows
        if r["n"] == 1_000 and r["m"] == 100 and r["procedure"] == "holm"
    ]
    floor_at_target = [
        r["timings"]["mapie"]["median_s"] / r["timings"]["floor"]["median_s"]
        for r in sec.rows
        if r["n"] == 1_000 and r["m"] == 100 and r["procedure"] == "holm"
    ]
    ok = min(holm_at_target) >= TARGET
    n_diff = sum(int(r["differences"]) for r in sec.rows)
    sec.headline.append(
        {
            "item": "Precision control vs MAPIE 1.6",
            "comparison": f"{len(sec.rows)} cases: n × m × Holm/Bonferroni/fixed-seq",
            "ratio": f"{fmt_ratio(min(at_target))}–{fmt_ratio(max(at_target))} at n = 1k, m = 100",
            "agreement": f"{n_diff} grid points differ in all, every one explained "
            "(k rounding, data-chosen order, NaN stop)",
            "target": f"Holm at n = 1k, m = 100 ≥ {TARGET:.0f}×: {met(ok)}"
            f" ({fmt_ratio(min(holm_at_target))}; its compiled calls alone, no checks or"
            f" results: {fmt_ratio(min(floor_at_target))})",
        }
    )
    return sec


def _proba(x: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.column_stack([1.0 - x, x])


def _compare(
    controller: Any,
    scores: NDArray[np.float64],
    unsafe: NDArray[np.int64],
    grid: NDArray[np.float64],
    grid_name: str,
    procedure: Procedure,
    mapie_name: str,
    alpha: float,
    delta: float,
    repeats: int,
) -> dict[str, Any]:
    """Time both on one case, compare the certified sets, explain every difference."""
    from scipy import stats

    from ctd_stats import fwer_control, learn_then_test
    from ctd_stats.ltt import LTTResult
    from ctd_stats.risks import conditional_risk

    # MAPIE flags score ≥ λ; ctd_stats flags score > λ: the float just below λ makes them the
    # same rule exactly (score ≥ λ ⇔ score > nextafter(λ, −∞)).
    below = np.nextafter(grid, -np.inf)
    holder: dict[str, Any] = {}

    def run_mapie() -> None:
        c = controller(
            predict_function=_proba,
            risk="precision",
            target_level=1.0 - alpha,
            confidence_level=1.0 - delta,
            list_predict_params=grid,
            fwer_method=mapie_name,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            c.calibrate(scores, unsafe)
        holder["mapie"] = c

    def run_ours() -> None:
        risk = conditional_risk(unsafe, scores, risk="precision", grid=below)
        holder["risk"] = risk
        # Tested in the natural order, flag least first (fixed before the data).
        holder["ours"] = risk.certify(alpha=alpha, delta=delta, procedure=procedure)

    def run_floor() -> None:
        holder["floor"] = _floor(unsafe, scores, below, alpha, delta, procedure)

    # Three warm-up calls: the first call of ours after MAPIE is cold (its caches evicted), so
    # one warm-up call underestimates how many calls of ours a ~2 ms sample needs.
    t = interleaved({"mapie": run_mapie, "ours": run_ours, "floor": run_floor}, repeats, warmup=3)
    ours: LTTResult = holder["ours"]
    if not np.array_equal(holder["floor"], ours.certified):
        raise DisagreementError(f"precision floor {procedure}: another certified set than ours")
    # Same answer as the two-call form with the order given explicitly.
    explicit = learn_then_test(
        counts=holder["risk"].counts,
        n=holder["risk"].n,
        alpha=alpha,
        delta=delta,
        procedure=procedure,
        order="descending",
    )
    if explicit != ours:
        raise DisagreementError("precision: certify() differs from learn_then_test(counts=...)")
    k, size = holder["risk"].counts, holder["risk"].n
    mapie_set = np.isin(grid, holder["mapie"].valid_predict_params)

    # Replay MAPIE's three choices with ctd_stats' FWER procedures, one after the other.
    # (1) its p-value: r̂ = 1 − (correct / n) as a float; min(Hoeffding-KL at r̂, the binomial
    # at ceil(n · r̂)), which rounds k up by one where the float lands above the integer.
    with np.errstate(invalid="ignore", divide="ignore"):
        r_hat = 1.0 - (size - k) / np.maximum(size, 1)
    k_mapie = np.minimum(np.where(size > 0, np.ceil(size * r_hat), 0), size)
    low = np.minimum(r_hat, alpha)
    with np.errstate(invalid="ignore", divide="ignore"):
        kl = np.where(low > 0, low * np.log(low / alpha), 0.0) + (1 - low) * np.log(
            (1 - low) / (1 - alpha)
        )
    p_mapie = np.minimum(np.exp(-size * kl), stats.binom.cdf(k_mapie, size, alpha))
    p_mapie = np.where(size > 0, p_mapie, 1.0)  # MAPIE: NaN, never rejected (see (3))

    def replay(order: Literal["ascending", "descending"]) -> NDArray[np.bool_]:
        res = fwer_control(
            p_mapie,
            delta=delta,
            procedure=procedure,
            order=order,
        )
        return res.rejected

    rounded = replay("descending")
    # (2) its fixed-sequence order, chosen from these calibration risks.
    direction = _mapie_direction(k, size) if procedure == "fixed_sequence" else "-"
    ordered = rounded if direction == "-" else replay(direction)
    # (3) a threshold that flags nothing has a NaN p-value; MAPIE's Holm then rejects nothing
    # (it picks the NaN as the smallest p-value and stops). Elsewhere NaN acts as p = 1.
    nan_stop = procedure == "holm" and bool(np.any(size == 0))
    explained = np.zeros_like(ordered) if nan_stop else ordered
    if not np.array_equal(explained, mapie_set):
        raise DisagreementError(
            f"precision n={scores.size} m={grid.size} {grid_name} {procedure}: MAPIE "
            f"certified {mapie_set.sum()}, ctd_stats {ours.certified.sum()}, not explained"
        )
    hb = learn_then_test(
        counts=k,
        n=size,
        alpha=alpha,
        delta=delta,
        method="hb",
        procedure=procedure,
        order="descending",
    )
    return {
        "n": scores.size,
        "m": grid.size,
        "grid": grid_name,
        "procedure": procedure,
        "mapie": fmt_time(t["mapie"].median),
        "ours": fmt_time(t["ours"].median),
        "ratio": fmt_ratio(t["mapie"].median / t["ours"].median),
        "floor": fmt_time(t["floor"].median),
        "floor_ratio": fmt_ratio(t["mapie"].median / t["floor"].median),
        "n_certified": f"{int(ours.certified.sum())} / {int(mapie_set.sum())}",
        "n_certified_hb": int(hb.certified.sum()),
        "differences": int(np.sum(ours.certified != mapie_set)),
        "by_rounding": int(np.sum(ours.certified != rounded)),
        "by_order": int(np.sum(rounded != ordered)),
        "by_nan": int(np.sum(ordered != explained)),
        "mapie_order": direction,
        "k_flips": int(np.sum(k_mapie != k)),
        "empty_thresholds": int(np.sum(size == 0)),
        "timings": {key: v.as_dict() for key, v in t.items()},
    }


def _floor(
    labels: NDArray[np.int64],
    scores: NDArray[np.float64],
    grid: NDArray[np.float64],
    alpha: float,
    delta: float,
    procedure: Procedure,
) -> NDArray[np.bool_]:
    """The compiled calls of ctd_stats' algorithm alone: no input check, no result object.

    Each score's place in the grid, one bincount, the flagged counts per class, scipy's
    binomial cdf ufunc (the one ``scipy.stats.binom.cdf`` calls) on the m (k, n) pairs, and the
    FWER step: what is left of a numpy/scipy implementation that computes every p-value as
    scipy does once validation and results are gone. ctd_stats adds input validation, the
    testing order and the result objects on top.
    """
    from scipy.special._ufuncs import _binom_cdf

    from ctd_stats.risks import _below  # searchsorted, or a checked guess above 2048 rows

    m = grid.size
    below = _below(grid, scores)
    per_class = np.bincount(below + (m + 1) * labels, minlength=2 * (m + 1)).reshape(2, m + 1)
    per_class[1] += per_class[0]  # row 1: all rows
    flagged = per_class[:, :0:-1].cumsum(axis=1)[:, ::-1]  # rows above each threshold
    k, size = flagged[0], flagged[1]
    p = _binom_cdf(k, np.maximum(size, 1), alpha)
    p[k >= size] = 1.0
    certified = np.zeros(m, dtype=bool)
    if procedure == "holm":
        order = np.argsort(p, kind="stable")
        ok = p[order] <= delta / np.arange(m, 0, -1)
        first = int(ok.argmin())
        certified[order[: first if not ok[first] else m]] = True
    elif procedure == "bonferroni":
        certified = p <= delta / m
    else:  # fixed sequence, flag least first
        failed = p[::-1] > delta
        first = int(failed.argmax())
        certified[m - (first if failed[first] else m) :] = True
    return certified
