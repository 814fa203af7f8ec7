"""A documented simulator of probe–expert cascade scores with group structure.

SIMULATED scores, never data: the simulator exists so that tests, validity checks and the book's
strong-/weak-expert chapters have score tables with known structure. Its parameters live in one
frozen dataclass, :class:`SimulationParameters`; :meth:`SimulationParameters.strong_expert` and
:meth:`SimulationParameters.weak_expert` are the paper's two regimes (CTD paper §5.1, §5.3:
probe accuracy ≈ 70 %, strong expert ≈ 84 %, weak expert below the probe).

Generative model (per input, group g drawn with probabilities ``group_weights``)::

    y ~ Bernoulli(positive_rate)                       label (1 = unsafe / high-stakes)
    z = 2y − 1
    p = sigmoid(z · a_p[g] + σ_p · ε_p)                probe score,  ε_p ~ N(0, 1)
    e = sigmoid(z · a_e[g] + σ_e · ε_e)                expert score, ε_e ~ N(0, 1), independent
    v = (2y − 1)(e − p)                                true delegation value
    d = v + dv_noise · ε_d                             DV score (a noisy regression of v)

with a_p[g] = σ_p Φ⁻¹(probe_accuracy[g]) and a_e[g] = σ_e Φ⁻¹(expert_accuracy[g]), so that the
probe's and expert's accuracy at the 0.5 cut in group g are exactly ``probe_accuracy[g]`` and
``expert_accuracy[g]``. The expert's larger σ makes its scores more extreme (LLM-like, scores near
0 or 1), so its errors are confident and delegation can hurt (v < 0). Groups differ in expert
benefit, as the four datasets of the paper's Table 1 do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import special, stats

from .._validation import (
    FloatArray,
    as_float_array,
    check_level,
    check_positive_int,
    check_seed,
    plain,
)
from .metrics import CascadeTable

__all__ = ["SimulationParameters", "simulate_cascade"]


@dataclass(frozen=True)
class SimulationParameters:
    """All parameters of the cascade-score simulator (see the module docstring).

    Attributes
    ----------
    group_names
        Names of the simulated groups ("sim_*" — they are not datasets).
    group_weights
        Mixture weights of the groups (sum to 1).
    probe_accuracy, expert_accuracy
        Accuracy at the 0.5 cut of the probe and the expert in each group, in (0.5, 1).
    probe_noise, expert_noise
        Logit noise scales σ_p, σ_e (larger = more extreme scores for the same accuracy).
    dv_noise
        Standard deviation of the DV score's error around the true v.
    positive_rate
        P(y = 1) (class balance).
    """

    group_names: tuple[str, ...] = ("sim_a", "sim_b", "sim_c", "sim_d")
    group_weights: tuple[float, ...] = (0.25, 0.25, 0.25, 0.25)
    probe_accuracy: tuple[float, ...] = (0.66, 0.74, 0.70, 0.70)
    expert_accuracy: tuple[float, ...] = (0.93, 0.78, 0.86, 0.80)
    probe_noise: float = 1.5
    expert_noise: float = 5.0
    dv_noise: float = 1.0
    positive_rate: float = 0.5

    def __post_init__(self) -> None:
        names = self.group_names
        if isinstance(names, (str, bytes)) or not isinstance(names, (Sequence, np.ndarray)):
            raise TypeError(f"group_names: expected a sequence of str, got {type(names).__name__}")
        if not all(isinstance(g, str) for g in names):
            raise TypeError("group_names: every name must be a str")
        k = len(names)
        if k == 0:
            raise ValueError("group_names: must not be empty")
        if len(set(names)) != k:
            raise ValueError("group_names: must be distinct")
        for name in ("group_weights", "probe_accuracy", "expert_accuracy"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
                raise TypeError(
                    f"{name}: expected a sequence of numbers, got {type(value).__name__}"
                )
            if len(value) != k:
                raise ValueError(f"{name}: expected {k} values (one per group)")
        w = as_float_array(self.group_weights, "group_weights", ndim=1, low=0.0)
        if not np.isclose(w.sum(), 1.0):
            raise ValueError(f"group_weights: must sum to 1, got {plain(w.sum())}")
        for name in ("probe_accuracy", "expert_accuracy"):
            acc = as_float_array(getattr(self, name), name, ndim=1, low=0.0, high=1.0)
            if np.any(acc <= 0.5) or np.any(acc >= 1.0):
                raise ValueError(f"{name}: each accuracy must lie in (0.5, 1)")
        for name in ("probe_noise", "expert_noise", "dv_noise"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(
                value, (int, float, np.integer, np.floating)
            ):
                raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
            if not math.isfinite(value):
                raise ValueError(f"{name}: must be finite, got {plain(value)}")
        for name in ("probe_noise", "expert_noise"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: must be > 0")
        if not self.dv_noise >= 0:
            raise ValueError("dv_noise: must be >= 0")
        check_level(self.positive_rate, "positive_rate")

    @classmethod
    def strong_expert(cls) -> SimulationParameters:
        """Strong-expert regime: expert ≈ 84 % vs probe ≈ 70 %, expert benefit varies by group."""
        return cls()

    @classmethod
    def weak_expert(cls) -> SimulationParameters:
        """Weak-expert regime: the expert (≈ 59 %) is worse than the probe (≈ 70 %) overall."""
        return cls(expert_accuracy=(0.66, 0.52, 0.56, 0.62), dv_noise=0.8)

    @property
    def expected_probe_accuracy(self) -> float:
        """Mixture accuracy of the probe at the 0.5 cut."""
        return float(np.dot(self.group_weights, self.probe_accuracy))

    @property
    def expected_expert_accuracy(self) -> float:
        """Mixture accuracy of the expert at the 0.5 cut."""
        return float(np.dot(self.group_weights, self.expert_accuracy))


def simulate_cascade(
    n: int,
    *,
    params: SimulationParameters | None = None,
    seed: int | np.random.Generator = 0,
    group_weights: ArrayLike | None = None,
    dv_offset: float = 0.0,
) -> CascadeTable:
    """Draw ``n`` simulated inputs as a :class:`~ctd_stats.cascade.CascadeTable`.

    ``group_weights`` overrides the mixture weights (e.g. to simulate a distribution shift
    towards one group) without changing anything else. ``dv_offset`` adds a constant to every DV
    score (a covariate shift that makes the DV probe over-estimate the value of delegating, as on
    a new domain). ``seed`` is an int or a Generator.
    """
    n = check_positive_int(n, "n")
    prm = SimulationParameters() if params is None else params
    if not isinstance(prm, SimulationParameters):
        raise TypeError(f"params: expected SimulationParameters, got {type(prm).__name__}")
    check_seed(seed)
    if isinstance(dv_offset, bool) or not isinstance(
        dv_offset, (int, float, np.integer, np.floating)
    ):
        raise TypeError(f"dv_offset: expected a number, got {type(dv_offset).__name__}")
    if not math.isfinite(dv_offset):
        raise ValueError(f"dv_offset: must be finite, got {plain(dv_offset)}")
    w: FloatArray = np.asarray(prm.group_weights, dtype=np.float64)
    if group_weights is not None:
        w = as_float_array(group_weights, "group_weights", ndim=1, low=0.0)
        if w.size != len(prm.group_names) or not np.isclose(w.sum(), 1.0):
            raise ValueError(
                f"group_weights: expected {len(prm.group_names)} weights summing to 1, got {w}"
            )
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    g = rng.choice(len(prm.group_names), size=n, p=w / w.sum())
    y = (rng.random(n) < prm.positive_rate).astype(np.int64)
    z = 2.0 * y - 1.0
    a_p = prm.probe_noise * stats.norm.ppf(np.asarray(prm.probe_accuracy))
    a_e = prm.expert_noise * stats.norm.ppf(np.asarray(prm.expert_accuracy))
    p = special.expit(z * a_p[g] + prm.probe_noise * rng.standard_normal(n))
    e = special.expit(z * a_e[g] + prm.expert_noise * rng.standard_normal(n))
    v = z * (e - p)
    d = v + prm.dv_noise * rng.standard_normal(n) + dv_offset
    names = np.asarray(prm.group_names, dtype=object)[g]
    return CascadeTable.from_arrays(probe=p, expert=e, dv=d, labels=y, groups=names)
