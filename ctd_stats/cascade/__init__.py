"""Calibrate-Then-Delegate (CTD paper): a cheap probe screens every input, a delegation-value
probe decides which inputs go to an expensive expert, under a budget certified by Learn-then-Test.

* :mod:`~ctd_stats.cascade.metrics` — delegation values (CTD paper §4.1, Eq. 6) and cascade
  metrics.
* :mod:`~ctd_stats.cascade.signals` — delegation signals, threshold grids, the budget test.
* :mod:`~ctd_stats.cascade.calibration` / :mod:`~ctd_stats.cascade.policies` — the calibrated
  "delegate iff signal > τ" policies: CTD, Unc. calibrated, budget-only LTT, plug-in (§4.2).
* :mod:`~ctd_stats.cascade.baselines` — batched top-k baselines and the global oracle (§5.1).
* :mod:`~ctd_stats.cascade.protocol` / :mod:`~ctd_stats.cascade.sweep` — the paper's protocol:
  settings, the sweep of every method at every budget, FAIC, group summaries (§5.3–5.5).
* :mod:`~ctd_stats.cascade.budget_validation` — re-split validation of the budget guarantee
  (App. D).
* :mod:`~ctd_stats.cascade.streaming` / :mod:`~ctd_stats.cascade.delegator` — the anytime-valid
  budget monitor and the per-input ``Delegator`` (init / update streaming protocol).
* :mod:`~ctd_stats.cascade.simulation` — simulated cascade scores (simulation, not data).
"""

from .baselines import global_oracle_masks, topk_budgets, topk_masks
from .budget_validation import (
    BatchCalibration,
    BudgetValidationResult,
    MethodValidation,
    calibrate_batch,
    validate_budget_guarantee,
    violation_tolerance,
)
from .calibration import ThresholdCalibration
from .delegator import DelegationSession, DelegationTrace, Delegator, DelegatorState
from .metrics import (
    CascadeCurves,
    CascadeMetrics,
    CascadeTable,
    accuracy,
    auroc,
    combine_scores,
    delegation_capacity,
    delegation_value,
    evaluate_cascade,
    evaluate_cascades,
    realised_budget,
)
from .policies import calibrate_budget_only, calibrate_ctd, calibrate_plug_in, calibrate_uncertainty
from .protocol import (
    METHOD_NAMES,
    SETTINGS,
    CTDSettings,
    GroupSummary,
    budget_grid,
    cap_group_indices,
    faic,
    group_summary,
)
from .signals import performance_risk, threshold_grid, uncertainty_score
from .simulation import SimulationParameters, simulate_cascade
from .streaming import (
    BudgetMonitor,
    BudgetMonitorState,
    BudgetMonitorTrace,
    budget_log_eprocess,
    first_alarm_times,
)
from .sweep import (
    FAICScore,
    SweepCurve,
    SweepPoint,
    SweepResult,
    sweep,
    sweep_delegation_mask,
    sweep_group_summary,
)

__all__ = [
    "METHOD_NAMES",
    "SETTINGS",
    "BatchCalibration",
    "BudgetMonitor",
    "BudgetMonitorState",
    "BudgetMonitorTrace",
    "BudgetValidationResult",
    "CTDSettings",
    "CascadeCurves",
    "CascadeMetrics",
    "CascadeTable",
    "DelegationSession",
    "DelegationTrace",
    "Delegator",
    "DelegatorState",
    "FAICScore",
    "GroupSummary",
    "MethodValidation",
    "SimulationParameters",
    "SweepCurve",
    "SweepPoint",
    "SweepResult",
    "ThresholdCalibration",
    "accuracy",
    "auroc",
    "budget_grid",
    "budget_log_eprocess",
    "calibrate_batch",
    "calibrate_budget_only",
    "calibrate_ctd",
    "calibrate_plug_in",
    "calibrate_uncertainty",
    "cap_group_indices",
    "combine_scores",
    "delegation_capacity",
    "delegation_value",
    "evaluate_cascade",
    "evaluate_cascades",
    "faic",
    "first_alarm_times",
    "global_oracle_masks",
    "group_summary",
    "performance_risk",
    "realised_budget",
    "simulate_cascade",
    "sweep",
    "sweep_delegation_mask",
    "sweep_group_summary",
    "threshold_grid",
    "topk_budgets",
    "topk_masks",
    "uncertainty_score",
    "validate_budget_guarantee",
    "violation_tolerance",
]
