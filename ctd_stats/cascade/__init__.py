"""Calibrate-Then-Delegate (CTD paper): a cheap probe screens every input, a delegation-value
probe decides which inputs go to an expensive expert, under a budget certified by Learn-then-Test.

* :mod:`~ctd_stats.cascade.metrics` — delegation values (CTD paper §4.1, Eq. 6) and cascade
  metrics.
* :mod:`~ctd_stats.cascade.signals` — delegation signals, threshold grids, the budget test.
* :mod:`~ctd_stats.cascade.calibration` / :mod:`~ctd_stats.cascade.policies` — the calibrated
  "delegate iff signal > τ" policies: CTD, Unc. calibrated, budget-only LTT, plug-in (§4.2).
* :mod:`~ctd_stats.cascade.baselines` — batched top-k baselines and the global oracle (§5.1).
* :mod:`~ctd_stats.cascade.protocol` / :mod:`~ctd_stats.cascade.sweeps` — the paper's protocol:
  settings, the sweep of every method at every budget, FAIC, group summaries (§5.3–5.5).
* :mod:`~ctd_stats.cascade.budget_validation` — re-split validation of the budget guarantee
  (App. D).
* :mod:`~ctd_stats.cascade.streaming` / :mod:`~ctd_stats.cascade.delegator` — the anytime-valid
  budget monitor and the per-input ``Delegator`` (init / update streaming protocol).
* :mod:`~ctd_stats.cascade.selective` — selective classification with a certified error on the
  kept inputs; :mod:`~ctd_stats.cascade.self_certifying` — a delegator that certifies its own
  threshold while deployed.
* :mod:`~ctd_stats.cascade.simulation` — simulated cascade scores (simulation, not data).
"""

# Star imports take each module's own __all__ (tests/test_public_api.py checks that every name
# is exported here and at the top level).
from . import (
    baselines,
    budget_validation,
    calibration,
    delegator,
    metrics,
    policies,
    protocol,
    selective,
    self_certifying,
    signals,
    simulation,
    streaming,
    sweeps,
)
from .baselines import *  # noqa: F403
from .budget_validation import *  # noqa: F403
from .calibration import *  # noqa: F403
from .delegator import *  # noqa: F403
from .metrics import *  # noqa: F403
from .policies import *  # noqa: F403
from .protocol import *  # noqa: F403
from .selective import *  # noqa: F403
from .self_certifying import *  # noqa: F403
from .signals import *  # noqa: F403
from .simulation import *  # noqa: F403
from .streaming import *  # noqa: F403
from .sweeps import *  # noqa: F403

__all__ = []
__all__ += baselines.__all__
__all__ += budget_validation.__all__
__all__ += calibration.__all__
__all__ += delegator.__all__
__all__ += metrics.__all__
__all__ += policies.__all__
__all__ += protocol.__all__
__all__ += selective.__all__
__all__ += self_certifying.__all__
__all__ += signals.__all__
__all__ += simulation.__all__
__all__ += streaming.__all__
__all__ += sweeps.__all__
