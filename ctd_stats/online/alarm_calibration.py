"""Calibrating the alarm threshold of a threshold monitor: CRC and UCB (one import point).

A threshold monitor alarms on a trajectory iff its minimum score m = min_t s_t is below λ.
Two risks, each estimated on one class of calibration trajectories (monitoring paper §3–4,
App. B):

* **false alarms** R_I(λ) = P(m < λ | correct), nondecreasing in λ — calibrated on the correct
  trajectories; the threshold is as LARGE as the guarantee allows;
* **missed detections** R_II(λ) = P(m ≥ λ | incorrect), nonincreasing in λ — calibrated on the
  incorrect trajectories; the threshold is as SMALL as the guarantee allows.

Two kinds of guarantee, ``alpha`` being the controlled risk (the paper's ε):

* **CRC** (:mod:`~ctd_stats.online.crc`, in expectation): E[R(λ̂)] ≤ α;
* **UCB** (:mod:`~ctd_stats.online.ucb`, high probability): P(R(λ̂) > α) ≤ δ.

Every function works on the closed form (exact, all distinct calibration values are candidates)
or on a grid; ``grid="paper"`` is the online-monitoring paper's ``linspace(0, 1, 10001)``. A grid
threshold is always on the conservative side of the closed form. When nothing can be certified
the result says so (``found=False``, ``reason``, ``min_n``) and keeps the safe threshold.

``groups=`` (one label per trajectory: task type, dataset, length bucket) gives one threshold per
group, each calibrated on its own rows: CRC in expectation for each group separately
(:class:`GroupedCRCThreshold`), UCB for all groups at once (:class:`GroupedUCBThreshold`), under
one α or a cap α_g per group, at δ/G per group (Bonferroni, any dependence between the groups)
or 1 − (1 − δ)^{1/G} (Šidák, independent groups' calibration samples).
"""

from __future__ import annotations

from ._calibration_common import PAPER_GRID_SIZE, RISKS, GridArg, Risk, paper_grid
from .crc import (
    CRCThreshold,
    GeneralCRCThreshold,
    GroupedCRCThreshold,
    crc_general,
    crc_threshold,
    crc_thresholds,
)
from .ucb import (
    UCB_BOUNDS,
    GroupedUCBThreshold,
    UCBThreshold,
    paper_nonstandard_hb_pvalue,
    ucb_threshold,
    ucb_thresholds,
)

__all__ = [
    "PAPER_GRID_SIZE",
    "RISKS",
    "UCB_BOUNDS",
    "CRCThreshold",
    "GeneralCRCThreshold",
    "GridArg",
    "GroupedCRCThreshold",
    "GroupedUCBThreshold",
    "Risk",
    "UCBThreshold",
    "crc_general",
    "crc_threshold",
    "crc_thresholds",
    "paper_grid",
    "paper_nonstandard_hb_pvalue",
    "ucb_threshold",
    "ucb_thresholds",
]
