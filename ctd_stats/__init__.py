"""ctd_stats: finite-sample guarantees for LLM-safety monitors.

The package has a testing core and two halves, one per paper:

* Testing core (top level) — :mod:`~ctd_stats.pvalues` (valid p-values for H0: R > α),
  :mod:`~ctd_stats.fwer` (Bonferroni, Holm, fixed-sequence, fallback, graphical),
  :mod:`~ctd_stats.ltt` (Learn-then-Test), :mod:`~ctd_stats.pareto` (Pareto testing),
  :mod:`~ctd_stats.splits` (the seeded splits both halves use), :mod:`~ctd_stats.datasets`
  (verified reference files).
* :mod:`ctd_stats.cascade` — Calibrate-Then-Delegate: delegation values and cascade metrics,
  calibrated policies, top-k baselines and the oracle, the paper's sweep protocol, the budget
  validation of App. D, the streaming ``Delegator`` with its budget monitor, and a simulator.
* :mod:`ctd_stats.online` — online safety monitoring: trajectories, threshold monitors, CRC / UCB
  alarm calibration, e-process monitors, metrics and the split protocol, a betting e-process.

Every public name is also importable from ``ctd_stats`` itself.

One vocabulary, everywhere:

=========  ==================================================================================
name       meaning
=========  ==================================================================================
``alpha``  the rate or risk being controlled: LTT risk level, CTD budget, false-alarm rate,
           missed-detection rate, a betting monitor's null rate (the monitoring paper's ε)
``delta``  the probability that a calibration fails (PAC / high-probability guarantees)
``level``  the type-I error of an anytime-valid alarm (Ville, betting and budget monitors)
=========  ==================================================================================

Options after the data are keyword-only; labels come first (``auroc(labels, scores)``). Alarm
times are 0-based step indices, :data:`NO_ALARM` (−1) in integer arrays and ``None`` in scalar
results. A calibration that certifies nothing says so (``found=False`` and a reason) and keeps
the safe threshold. Calibration results and monitor states have ``to_json()`` /
``from_json(text)``: exact, versioned and checksummed, so they can be shipped and checkpointed.
Streaming monitors share one pure protocol: ``state = m.init()``, ``state, step = m.update(state,
x)`` with one :class:`Step` shape.

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

__version__ = "1.0.0"

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
