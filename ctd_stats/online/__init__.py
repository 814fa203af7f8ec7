"""Online safety monitoring (Online Safety Monitoring for LLMs): a verifier scores each step of a
trajectory and an alarm fires when the score drops below a calibrated threshold.

* :mod:`~ctd_stats.online.trajectories` — ragged per-step scores.
* :mod:`~ctd_stats.online.monitors` — threshold monitors (streaming and vectorised).
* :mod:`~ctd_stats.online.alarm_calibration` — CRC (:mod:`~ctd_stats.online.crc`) and UCB
  (:mod:`~ctd_stats.online.ucb`) alarm thresholds (§3–4).
* :mod:`~ctd_stats.online.evaluator` — e-valuator and change-point likelihood-ratio models.
* :mod:`~ctd_stats.online.eprocess_thresholds` — Ville, randomised Ville, PAC, conformal.
* :mod:`~ctd_stats.online.eprocess` — e-process first alarms, streaming and fitted monitors.
* :mod:`~ctd_stats.online.monitor_metrics` — metrics and the split protocol (§5).
* :mod:`~ctd_stats.online.betting` — a betting e-process that watches a deployed rate.
* :mod:`~ctd_stats.online.anytime_ltt` — anytime-valid Learn-then-Test: certify thresholds
  while deployed (:mod:`~ctd_stats.online.anytime_audit`: importance-weighted audit labels;
  :mod:`~ctd_stats.online.anytime_alarms`: alarm thresholds from late trajectory outcomes).
"""

# Star imports take each module's own __all__ (tests/test_public_api.py checks that every name
# is exported here and at the top level).
from . import (
    alarm_calibration,
    anytime_alarms,
    anytime_audit,
    anytime_ltt,
    betting,
    crc,
    eprocess,
    eprocess_thresholds,
    evaluator,
    monitor_metrics,
    monitors,
    trajectories,
    ucb,
)
from .alarm_calibration import *  # noqa: F403
from .anytime_alarms import *  # noqa: F403
from .anytime_audit import *  # noqa: F403
from .anytime_ltt import *  # noqa: F403
from .betting import *  # noqa: F403
from .crc import *  # noqa: F403
from .eprocess import *  # noqa: F403
from .eprocess_thresholds import *  # noqa: F403
from .evaluator import *  # noqa: F403
from .monitor_metrics import *  # noqa: F403
from .monitors import *  # noqa: F403
from .trajectories import *  # noqa: F403
from .ucb import *  # noqa: F403

__all__ = []
__all__ += alarm_calibration.__all__
__all__ += anytime_alarms.__all__
__all__ += anytime_audit.__all__
__all__ += anytime_ltt.__all__
__all__ += betting.__all__
__all__ += crc.__all__
__all__ += eprocess.__all__
__all__ += eprocess_thresholds.__all__
__all__ += evaluator.__all__
__all__ += monitor_metrics.__all__
__all__ += monitors.__all__
__all__ += trajectories.__all__
__all__ += ucb.__all__
