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
from .anytime_alarms import LateOutcomeCertifier, false_alarm_losses
from .anytime_audit import importance_weighted_losses
from .anytime_ltt import AnytimeLTT, AnytimeLTTRun, AnytimeLTTState, CertificationStep
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
    max_log_eprocess,
    pac_threshold,
    randomized_ville_threshold,
    ville_threshold,
)
from .monitor_metrics import MonitorMetrics, compute_monitor_metrics, run_monitor_experiment
from .monitors import NO_ALARM, MonitorState, ThresholdMonitor, alarm_matrix, first_alarm_steps
from .trajectories import Trajectories, load_verifier_scores

__all__ = [
    "NO_ALARM",
    "AnytimeLTT",
    "AnytimeLTTRun",
    "AnytimeLTTState",
    "BettingMonitor",
    "BettingPath",
    "BettingState",
    "CRCThreshold",
    "CertificationStep",
    "ChangePointModel",
    "EProcessMonitor",
    "EProcessState",
    "EProcessThreshold",
    "EValuatorModel",
    "FittedEProcessMonitor",
    "GeneralCRCThreshold",
    "LateOutcomeCertifier",
    "MonitorMetrics",
    "MonitorState",
    "ThresholdMonitor",
    "Trajectories",
    "UCBThreshold",
    "alarm_matrix",
    "betting_eprocess",
    "compute_monitor_metrics",
    "conformal_threshold",
    "crc_general",
    "crc_threshold",
    "crc_thresholds",
    "eprocess_first_alarms",
    "evaluator_monitor",
    "false_alarm_losses",
    "first_alarm_steps",
    "importance_weighted_losses",
    "load_verifier_scores",
    "max_log_eprocess",
    "pac_threshold",
    "randomized_ville_threshold",
    "run_monitor_experiment",
    "ucb_threshold",
    "ucb_thresholds",
    "ville_threshold",
]
