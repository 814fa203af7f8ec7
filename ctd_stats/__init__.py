"""ctd_stats: finite-sample guarantees for LLM-safety monitors.

Modules (one idea each; everything below is also importable from its module):

* Testing core — :mod:`~ctd_stats.pvalues` (valid p-values for H0: R > α),
  :mod:`~ctd_stats.fwer` (Bonferroni, Holm, fixed-sequence, fallback, graphical),
  :mod:`~ctd_stats.ltt` (Learn-then-Test), :mod:`~ctd_stats.pareto` (Pareto testing).
* Calibrate-Then-Delegate — :mod:`~ctd_stats.cascade` (delegation values, cascade metrics),
  :mod:`~ctd_stats.delegation` (CTD and baselines, sweeps), :mod:`~ctd_stats.budget_validation`
  (re-split validation of the budget guarantee), :mod:`~ctd_stats.streaming` (per-input
  ``Delegator`` and anytime-valid budget monitor), :mod:`~ctd_stats.simulation` (simulated cascade
  scores — simulation, not data).
* Online monitoring — :mod:`~ctd_stats.trajectories` (ragged step scores),
  :mod:`~ctd_stats.monitors` (threshold monitors), :mod:`~ctd_stats.alarm_calibration` (CRC, UCB),
  :mod:`~ctd_stats.eprocess` (e-valuator and change-point e-processes),
  :mod:`~ctd_stats.monitor_metrics` (metrics and the split protocol), :mod:`~ctd_stats.betting`
  (betting e-process that watches a deployed rate).
* Data — :mod:`~ctd_stats.datasets` (verified reference files).

The loss-matrix p-value function is :func:`ctd_stats.pvalues.pvalues` (the name
``ctd_stats.pvalues`` itself is the module).
"""

from . import cascade, online
from ._streaming import NO_ALARM, Step
from .cascade import *  # noqa: F403  (names listed in cascade.__all__)
from .fwer import FWERResult, bonferroni, fallback, fixed_sequence, fwer_control, graphical, holm
from .ltt import LTTResult, learn_then_test
from .online import *  # noqa: F403  (names listed in online.__all__)
from .pareto import ParetoTestResult, pareto_front, pareto_test
from .pvalues import (
    bentkus_pvalue,
    binomial_pvalue,
    binomial_upper_bound,
    hb_pvalue,
    hoeffding_kl_pvalue,
    hoeffding_pvalue,
    pvalues_from_counts,
    wsr_pvalue,
)
from .splits import SplitIndices, split_by_trajectory, split_indices

__version__ = "0.1.0"

__all__ = [
    "NO_ALARM",
    "FWERResult",
    "LTTResult",
    "ParetoTestResult",
    "SplitIndices",
    "Step",
    "bentkus_pvalue",
    "binomial_pvalue",
    "binomial_upper_bound",
    "bonferroni",
    "fallback",
    "fixed_sequence",
    "fwer_control",
    "graphical",
    "hb_pvalue",
    "hoeffding_kl_pvalue",
    "hoeffding_pvalue",
    "holm",
    "learn_then_test",
    "pareto_front",
    "pareto_test",
    "pvalues_from_counts",
    "split_by_trajectory",
    "split_indices",
    "wsr_pvalue",
]
__all__ += cascade.__all__
__all__ += online.__all__
