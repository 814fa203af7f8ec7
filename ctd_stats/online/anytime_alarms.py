"""Certify alarm thresholds while deployed, from trajectory outcomes that arrive late.

A threshold monitor alarms on a trajectory iff one of its step scores falls below λ, i.e. iff
its minimum score m_i < λ (online monitoring paper, §3). Its false-alarm rate at λ is the
probability that a *correct* trajectory alarms. A deployed trajectory's outcome (correct or
not) is known only some time after it finished; once it is, its false-alarm indicators at every
grid threshold, L^j = 1[m_i < λ_j] for a correct trajectory, form one input of an
:class:`~ctd_stats.online.AnytimeLTT` (the risk is conditional on being correct, so incorrect
trajectories enter nothing). Order: most conservative first is the smallest λ (alarms least),
``"ascending"``; the certified threshold is the largest λ whose false-alarm rate is certified
≤ α, with the anytime guarantee of :class:`~ctd_stats.online.AnytimeLTT`.

Late arrival keeps the guarantee as long as the order in which outcomes become known does not
depend on the indicators themselves (given the past): then the correct trajectories enter in an
order that is a stopping-time rearrangement of an exchangeable stream and each indicator's
conditional mean given what entered before is its false-alarm rate (Waudby-Smith & Ramdas 2024,
testing by betting; the betting e-process needs only E[L_t | past] ≥ α under the null). An
arrival order that depends on whether the trajectory alarmed (e.g. alarmed trajectories are
reviewed first) breaks it.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from .._validation import as_binary_array, as_float_array, check_grid
from ..typing import FloatArray
from .anytime_ltt import AnytimeLTT, AnytimeLTTState, CertificationStep
from .trajectories import Trajectories

__all__ = ["LateOutcomeCertifier", "false_alarm_losses"]


def false_alarm_losses(minima: Trajectories | ArrayLike, grid: ArrayLike) -> FloatArray:
    """(n, m) false-alarm indicators 1[m_i < λ_j] of finished trajectories at every λ_j.

    Parameters
    ----------
    minima
        Each trajectory's minimum step score (n,), or a
        :class:`~ctd_stats.online.Trajectories` (its ``minima``).
    grid
        Alarm thresholds, strictly increasing (±inf allowed).

    Returns
    -------
    FloatArray
        0/1 losses, one row per trajectory in the given order (feed correct ones only).

    Examples
    --------
    >>> false_alarm_losses([0.2, 0.7], [0.1, 0.5, 0.9])
    array([[0., 1., 1.],
           [0., 0., 1.]])
    """
    mins = minima.minima if isinstance(minima, Trajectories) else minima
    m = as_float_array(mins, "minima", ndim=1)
    g = check_grid(grid, "grid", finite=False)
    return (m[:, None] < g[None, :]).astype(np.float64)


class LateOutcomeCertifier:
    """Feed finished trajectories to an :class:`AnytimeLTT` as their outcomes become known.

    Parameters
    ----------
    grid
        Alarm thresholds λ_1 < … < λ_m (±inf allowed).
    certifier
        An :class:`~ctd_stats.online.AnytimeLTT` over the m thresholds with one risk (the
        false-alarm rate, bound 1), usually ``order="ascending"``.

    Notes
    -----
    :meth:`update` takes one trajectory whose outcome just became known: a correct one is one
    certifier input (its indicators at every λ_j), an incorrect one changes nothing. The
    guarantee of the certifier holds when the order of arrival does not depend on the
    indicators (module docstring). The certified threshold is ``grid[state.index]``.

    Examples
    --------
    >>> import numpy as np
    >>> from ctd_stats.online import AnytimeLTT
    >>> grid = np.linspace(0, 1, 11)
    >>> cert = LateOutcomeCertifier(grid, AnytimeLTT(11, alpha=0.2, delta=0.1, order="ascending"))
    >>> rng = np.random.default_rng(0)
    >>> state = cert.run(cert.init(), rng.uniform(size=3000), np.ones(3000, dtype=bool))
    >>> float(grid[state.index])          # P(min < λ) = λ for uniform minima: λ <= 0.2
    0.1
    """

    __slots__ = ("certifier", "grid")

    grid: FloatArray
    certifier: AnytimeLTT

    def __init__(self, grid: ArrayLike, certifier: AnytimeLTT) -> None:
        g = check_grid(grid, "grid", finite=False)
        if not isinstance(certifier, AnytimeLTT):
            raise TypeError(f"certifier: expected an AnytimeLTT, got {type(certifier).__name__}")
        if certifier.m != g.size or certifier.n_risks != 1:
            raise ValueError(
                f"certifier: must certify one risk over the {g.size} grid thresholds "
                f"(has m={certifier.m}, {certifier.n_risks} risks)"
            )
        g.setflags(write=False)
        object.__setattr__(self, "grid", g)
        object.__setattr__(self, "certifier", certifier)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("LateOutcomeCertifier is immutable")

    def __repr__(self) -> str:
        return f"LateOutcomeCertifier(m={self.grid.size}, certifier={self.certifier!r})"

    def init(self) -> AnytimeLTTState:
        """The certifier's initial state."""
        return self.certifier.init()

    def update(
        self, state: AnytimeLTTState, scores: ArrayLike, correct: bool, /
    ) -> tuple[AnytimeLTTState, CertificationStep | None]:
        """One trajectory whose outcome is now known: its step scores and whether it was correct.

        Returns the new state and the certifier's step (``None`` for an incorrect trajectory,
        which leaves the state unchanged).
        """
        if not isinstance(correct, (bool, np.bool_)):
            raise TypeError(f"correct: expected a bool, got {type(correct).__name__}")
        steps = as_float_array(scores, "scores", ndim=1)
        if not correct:
            return state, None
        return self.certifier.update(state, (steps.min() < self.grid).astype(np.float64))

    def run(
        self,
        state: AnytimeLTTState,
        minima: Trajectories | ArrayLike,
        correct: ArrayLike | None = None,
        /,
    ) -> AnytimeLTTState:
        """Many finished trajectories, in the order their outcomes became known.

        ``minima`` (n,) minimum scores or a :class:`~ctd_stats.online.Trajectories` (whose
        ``labels`` give ``correct`` when it is omitted); ``correct`` (n,) 0/1. The same state as
        :meth:`update` called on each in turn.
        """
        if correct is None:
            if not isinstance(minima, Trajectories) or minima.labels is None:
                raise ValueError("correct: required unless minima are labelled Trajectories")
            correct = minima.labels
        losses = false_alarm_losses(minima, self.grid)
        ok = as_binary_array(correct, "correct", ndim=1).astype(bool)
        if ok.size != losses.shape[0]:
            raise ValueError(f"correct: expected {losses.shape[0]} outcomes, got {ok.size}")
        if not ok.any():
            return state
        return self.certifier.run(state, losses[ok]).state
