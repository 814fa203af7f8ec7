"""Online safety monitoring (Online Safety Monitoring for LLMs): a verifier scores each step of a
trajectory and an alarm fires when the score drops below a calibrated threshold.

* :mod:`~ctd_stats.online.trajectories` — ragged per-step scores.
* :mod:`~ctd_stats.online.monitors` — threshold monitors (streaming and vectorised).
* :mod:`~ctd_stats.online.alarm_calibration` — CRC and UCB alarm thresholds (§3–4).
* :mod:`~ctd_stats.online.eprocess` — e-valuator and change-point e-processes and thresholds.
* :mod:`~ctd_stats.online.monitor_metrics` — metrics and the split protocol (§5).
* :mod:`~ctd_stats.online.betting` — a betting e-process that watches a deployed rate.
"""

from .alarm_calibration import CRCThreshold, UCBThreshold, crc_general, crc_threshold, ucb_threshold
from .betting import BettingMonitor, betting_eprocess
from .eprocess import (
    ChangePointModel,
    EValuatorModel,
    conformal_threshold,
    pac_threshold,
    ville_threshold,
)
from .monitor_metrics import MonitorMetrics, monitor_metrics, run_monitor_experiment
from .monitors import ThresholdMonitor, alarm_matrix, first_alarm_steps
from .trajectories import Trajectories, load_verifier_scores

__all__ = [
    "BettingMonitor",
    "CRCThreshold",
    "ChangePointModel",
    "EValuatorModel",
    "MonitorMetrics",
    "ThresholdMonitor",
    "Trajectories",
    "UCBThreshold",
    "alarm_matrix",
    "betting_eprocess",
    "conformal_threshold",
    "crc_general",
    "crc_threshold",
    "first_alarm_steps",
    "load_verifier_scores",
    "monitor_metrics",
    "pac_threshold",
    "run_monitor_experiment",
    "ucb_threshold",
    "ville_threshold",
]
