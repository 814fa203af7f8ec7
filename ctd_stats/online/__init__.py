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
"""

from .alarm_calibration import (
    CRCThreshold,
    GeneralCRCThreshold,
    UCBThreshold,
    crc_general,
    crc_threshold,
    crc_thresholds,
    ucb_threshold,
    ucb_thresholds,
)
from .betting import BettingMonitor, BettingPath, BettingState, betting_eprocess
from .eprocess import (
    ChangePointModel,
    EProcessMonitor,
    EProcessState,
    EProcessThreshold,
    EValuatorModel,
    FittedEProcessMonitor,
    conformal_threshold,
    eprocess_first_alarms,
    evaluator_monitor,
    pac_threshold,
    randomized_ville_threshold,
    ville_threshold,
)
from .monitor_metrics import MonitorMetrics, monitor_metrics, run_monitor_experiment
from .monitors import MonitorState, ThresholdMonitor, alarm_matrix, first_alarm_steps
from .trajectories import Trajectories, load_verifier_scores

__all__ = [
    "BettingMonitor",
    "BettingPath",
    "BettingState",
    "CRCThreshold",
    "ChangePointModel",
    "EProcessMonitor",
    "EProcessState",
    "EProcessThreshold",
    "EValuatorModel",
    "FittedEProcessMonitor",
    "GeneralCRCThreshold",
    "MonitorMetrics",
    "MonitorState",
    "ThresholdMonitor",
    "Trajectories",
    "UCBThreshold",
    "alarm_matrix",
    "betting_eprocess",
    "conformal_threshold",
    "crc_general",
    "crc_threshold",
    "crc_thresholds",
    "eprocess_first_alarms",
    "evaluator_monitor",
    "first_alarm_steps",
    "load_verifier_scores",
    "monitor_metrics",
    "pac_threshold",
    "randomized_ville_threshold",
    "run_monitor_experiment",
    "ucb_threshold",
    "ucb_thresholds",
    "ville_threshold",
]
