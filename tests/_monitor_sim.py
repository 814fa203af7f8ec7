"""Simulation model with analytic risks for the online-monitor validity tests (SPEC §8).

Trajectory length T = 2 + Bin(10, 0.5). Correct trajectories: steps iid Beta(5, 2).
Incorrect trajectories: Beta(5, 2) until a geometric change point τ ~ Geom(ρ) on {1, 2, ...},
Beta(2, 3) from step τ on (if τ > T the trajectory never changes).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from ctd_stats._validation import FloatArray
from ctd_stats.online.trajectories import Trajectories

PRE = stats.beta(5, 2)
POST = stats.beta(2, 3)
RHO = 0.3
T_VALUES = np.arange(2, 13)
T_PROBS = stats.binom.pmf(np.arange(11), 10, 0.5)


def sample_lengths(rng: np.random.Generator, n: int) -> np.ndarray:
    return 2 + rng.binomial(10, 0.5, size=n)


def _min_of_iid(rng: np.random.Generator, dist: object, k: np.ndarray) -> FloatArray:
    """Minimum of k iid draws (k may be 0: +inf), by inversion."""
    u = rng.uniform(size=len(k))
    safe_k = np.maximum(k, 1)
    q = 1.0 - (1.0 - u) ** (1.0 / safe_k)
    out = np.asarray(dist.ppf(q), dtype=np.float64)  # type: ignore[attr-defined]
    return np.where(k > 0, out, np.inf)


def correct_minima(rng: np.random.Generator, n: int) -> FloatArray:
    return _min_of_iid(rng, PRE, sample_lengths(rng, n))


def incorrect_minima(rng: np.random.Generator, n: int, rho: float = RHO) -> FloatArray:
    t = sample_lengths(rng, n)
    tau = rng.geometric(rho, size=n)
    n_pre = np.minimum(tau - 1, t)
    n_post = t - n_pre
    return np.minimum(_min_of_iid(rng, PRE, n_pre), _min_of_iid(rng, POST, n_post))


def false_alarm_risk(lam: float) -> float:
    """R_I(λ) = P(min_t s_t < λ | correct) = 1 − Σ_T P(T)(1 − F(λ))^T."""
    if lam == -np.inf:
        return 0.0
    if lam == np.inf:
        return 1.0
    surv = float(PRE.sf(lam))
    return float(1.0 - np.sum(T_PROBS * surv**T_VALUES))


def missed_detection_risk(lam: float, rho: float = RHO) -> float:
    """R_II(λ) = P(min_t s_t ≥ λ | incorrect), summed over T and the change point."""
    if lam == -np.inf:
        return 1.0
    if lam == np.inf:
        return 0.0
    s0, s1 = float(PRE.sf(lam)), float(POST.sf(lam))
    total = 0.0
    for t, pt in zip(T_VALUES, T_PROBS, strict=True):
        taus = np.arange(1, t + 1)
        p_tau = rho * (1 - rho) ** (taus - 1)
        inside = np.sum(p_tau * s0 ** (taus - 1) * s1 ** (t - taus + 1))
        never = (1 - rho) ** t * s0**t
        total += pt * (inside + never)
    return float(total)


def simulate_trajectories(
    rng: np.random.Generator, n: int, *, correct_fraction: float = 0.5, rho: float = RHO
) -> Trajectories:
    """Full trajectories (scores per step) with labels from the model above."""
    t = sample_lengths(rng, n)
    labels = (rng.uniform(size=n) < correct_fraction).astype(np.int64)
    total = int(t.sum())
    offsets = np.concatenate([[0], np.cumsum(t)])
    pos = np.arange(total) - np.repeat(offsets[:-1], t)  # 0-based step
    tau = np.repeat(rng.geometric(rho, size=n), t)  # change at 1-based step tau
    changed = (np.repeat(labels, t) == 0) & (pos + 1 >= tau)
    scores = np.where(
        changed, POST.rvs(size=total, random_state=rng), PRE.rvs(size=total, random_state=rng)
    )
    return Trajectories(scores=scores, offsets=offsets, labels=labels)
