"""Calibrate-Then-Delegate (CTD paper): a cheap probe screens every input, a delegation-value
probe decides which inputs go to an expensive expert, under a budget certified by Learn-then-Test.

* :mod:`~ctd_stats.cascade.metrics` — delegation values (paper §3, Eq. 1) and cascade metrics.
* :mod:`~ctd_stats.cascade.delegation` — calibrated policies, top-k baselines, the oracle and the
  paper's sweep protocol (§4–5).
* :mod:`~ctd_stats.cascade.budget_validation` — re-split validation of the budget guarantee
  (App. D).
* :mod:`~ctd_stats.cascade.streaming` — the per-input ``Delegator`` and the anytime-valid budget
  monitor.
* :mod:`~ctd_stats.cascade.simulation` — simulated cascade scores (simulation, not data).
"""

from .budget_validation import BudgetValidationResult, validate_budget_guarantee
from .delegation import (
    CTDSettings,
    SweepResult,
    ThresholdCalibration,
    calibrate_budget_only,
    calibrate_ctd,
    calibrate_uncertainty,
    sweep,
    topk_masks,
    uncertainty_score,
)
from .metrics import (
    CascadeMetrics,
    CascadeTable,
    auroc,
    combine_scores,
    delegation_capacity,
    delegation_value,
    evaluate_cascade,
)
from .simulation import SimulationParameters, simulate_cascade
from .streaming import BudgetMonitor, Delegator

__all__ = [
    "BudgetMonitor",
    "BudgetValidationResult",
    "CTDSettings",
    "CascadeMetrics",
    "CascadeTable",
    "Delegator",
    "SimulationParameters",
    "SweepResult",
    "ThresholdCalibration",
    "auroc",
    "calibrate_budget_only",
    "calibrate_ctd",
    "calibrate_uncertainty",
    "combine_scores",
    "delegation_capacity",
    "delegation_value",
    "evaluate_cascade",
    "simulate_cascade",
    "sweep",
    "topk_masks",
    "uncertainty_score",
    "validate_budget_guarantee",
]
