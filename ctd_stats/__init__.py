"""ctd_stats: finite-sample guarantees for LLM-safety monitors.

The package has a testing core and two halves, one per paper:

* Testing core (top level) — :mod:`~ctd_stats.pvalues` (valid p-values for H0: R > α),
  :mod:`~ctd_stats.fwer` (Bonferroni, Holm, fixed-sequence, fallback, graphical),
  :mod:`~ctd_stats.ltt` (Learn-then-Test), :mod:`~ctd_stats.pareto` (Pareto testing),
  :mod:`~ctd_stats.grouped` (Learn-then-Test with per-group budgets),
  :mod:`~ctd_stats.risks` (conditional risks of a thresholded score),
  :mod:`~ctd_stats.logistic` (the L2-regularised logistic fit the models use),
  :mod:`~ctd_stats.splits` (the seeded splits both halves use), :mod:`~ctd_stats.datasets`
  (verified reference files), :mod:`~ctd_stats.typing` (the public array types).
* :mod:`ctd_stats.cascade` — Calibrate-Then-Delegate: delegation values and cascade metrics,
  calibrated policies, top-k baselines and the oracle, the paper's sweep protocol, the budget
  validation of App. D, the streaming ``Delegator`` with its budget monitor, and a simulator.
* :mod:`ctd_stats.online` — online safety monitoring: trajectories, threshold monitors, CRC / UCB
  alarm calibration, e-process monitors, metrics and the split protocol, a betting e-process.

Every name in the ``__all__`` of a public module (one without a leading underscore) is
importable from ``ctd_stats`` itself, and a name of ``ctd_stats.cascade.*`` / ``ctd_stats.online.*``
also from ``ctd_stats.cascade`` / ``ctd_stats.online``. The one exception is a function named like
its module: ``ctd_stats.pvalues`` is the module, its loss-matrix function is
:func:`ctd_stats.pvalues.pvalues`. The array types of the signatures are public in
:mod:`ctd_stats.typing` (``FloatArray``, ``IntArray``, ``BoolArray``). Modules and names with a
leading underscore are internal and may change without notice.

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
"""

# Star imports take each module's own __all__, so a name added to or renamed in a module
# appears here without a second list to keep in step (tests/test_public_api.py checks it).
from . import (
    _streaming,
    cascade,
    datasets,
    fwer,
    grouped,
    logistic,
    ltt,
    online,
    pareto,
    risks,
    splits,
    typing,
)
from ._streaming import *  # noqa: F403
from ._version import __version__ as __version__

# One star import per cascade module (a star import of a star-importing package is not
# followed by mypy).
from .cascade.baselines import *  # noqa: F403
from .cascade.budget_validation import *  # noqa: F403
from .cascade.calibration import *  # noqa: F403
from .cascade.delegator import *  # noqa: F403
from .cascade.metrics import *  # noqa: F403
from .cascade.policies import *  # noqa: F403
from .cascade.protocol import *  # noqa: F403
from .cascade.selective import *  # noqa: F403
from .cascade.self_certifying import *  # noqa: F403
from .cascade.signals import *  # noqa: F403
from .cascade.simulation import *  # noqa: F403
from .cascade.streaming import *  # noqa: F403
from .cascade.sweeps import *  # noqa: F403
from .datasets import *  # noqa: F403
from .fwer import *  # noqa: F403
from .grouped import *  # noqa: F403
from .logistic import *  # noqa: F403
from .ltt import *  # noqa: F403
from .online.alarm_calibration import *  # noqa: F403
from .online.anytime_alarms import *  # noqa: F403
from .online.anytime_audit import *  # noqa: F403
from .online.anytime_ltt import *  # noqa: F403
from .online.betting import *  # noqa: F403
from .online.crc import *  # noqa: F403
from .online.eprocess import *  # noqa: F403
from .online.eprocess_thresholds import *  # noqa: F403
from .online.evaluator import *  # noqa: F403
from .online.monitor_metrics import *  # noqa: F403
from .online.monitors import *  # noqa: F403
from .online.trajectories import *  # noqa: F403
from .online.ucb import *  # noqa: F403
from .pareto import *  # noqa: F403
from .pvalues import (  # not ``pvalues``: ``ctd_stats.pvalues`` stays the module
    METHODS,
    PValueMethod,
    bentkus_pvalue,
    binomial_pvalue,
    binomial_upper_bound,
    hb_pvalue,
    hoeffding_kl_pvalue,
    hoeffding_pvalue,
    pvalues_from_counts,
    wsr_pvalue,
)
from .risks import *  # noqa: F403
from .splits import *  # noqa: F403
from .typing import *  # noqa: F403

__all__ = [
    "METHODS",
    "PValueMethod",
    "bentkus_pvalue",
    "binomial_pvalue",
    "binomial_upper_bound",
    "hb_pvalue",
    "hoeffding_kl_pvalue",
    "hoeffding_pvalue",
    "pvalues_from_counts",
    "wsr_pvalue",
]
__all__ += _streaming.__all__
__all__ += cascade.__all__
__all__ += datasets.__all__
__all__ += fwer.__all__
__all__ += grouped.__all__
__all__ += logistic.__all__
__all__ += ltt.__all__
__all__ += online.__all__
__all__ += pareto.__all__
__all__ += risks.__all__
__all__ += splits.__all__
__all__ += typing.__all__
