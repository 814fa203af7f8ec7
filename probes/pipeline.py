"""The last step of the probes pipeline: an activation artifact becomes a ``CascadeTable``.

The CTD paper's set-up (§5.1): the safety probe is an L2 logistic regression (C = 1, no feature
scaling) fitted on the ``train`` split (training prompts), its score is P(high-stakes); the
delegation-value (DV) probe is a ridge regression (L2 penalty λ = 1) fitted on the ``dev`` split
to the delegation value of the chosen expert (§3, Eq. 1: v = (2y − 1)(e − p), or its binary
variant); the ``test`` split is the calibration / evaluation pool handed to
:mod:`ctd_stats.cascade`.

The safety probe does not depend on the expert, so it is fitted once per artifact: an artifact
built by ``python -m probes artifacts`` stores its scores (array ``probe``) and they are used as
they are; for an older artifact without them the probe is fitted once and kept for the process.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ctd_stats import CascadeTable, delegation_value
from ctd_stats.cascade.metrics import ValueKind
from ctd_stats.typing import FloatArray

from .artifact import load_artifact
from .linear import fit_logistic, fit_ridge

__all__ = ["ArtifactCascade", "artifact_cascade", "safety_probe_scores"]

Arrays = Mapping[str, NDArray[np.generic]]
_PROBE_CACHE: dict[str, FloatArray] = {}


@dataclass(frozen=True)
class ArtifactCascade:
    """The test pool's cascade table plus the dev-split quantities behind the DV probe."""

    expert: str
    table: CascadeTable  # test pool: probe, expert, DV score, label, group
    dev_values: FloatArray  # true delegation value on dev (the DV probe's target)
    dev_predictions: FloatArray  # DV probe on dev (in-sample)
    test_values: FloatArray  # true delegation value on the test pool

    def __repr__(self) -> str:
        return (
            f"ArtifactCascade(expert={self.expert!r}, test pool n={self.table.n}, "
            f"dev n={self.dev_values.size})"
        )


def _load(artifact: str | os.PathLike[str] | Arrays) -> Arrays:
    if isinstance(artifact, Mapping):
        return artifact
    return load_artifact(artifact)


def _check(art: Arrays) -> Arrays:
    for key in ("activations", "label", "split", "group"):
        if key not in art:
            raise ValueError(f"artifact: has no array {key!r}")
    return art


def _fingerprint(art: Arrays) -> str:
    h = hashlib.sha256()
    for key in ("activations", "label", "split"):
        h.update(np.ascontiguousarray(art[key]).tobytes())
    return h.hexdigest()


def safety_probe_scores(artifact: str | os.PathLike[str] | Arrays, *, C: float = 1.0) -> FloatArray:
    """P(high-stakes) of the safety probe for every row of the artifact.

    Uses the artifact's stored ``probe`` scores when present (the builder fitted that probe);
    otherwise fits the probe on the ``train`` rows once per artifact and process.
    """
    art = _check(_load(artifact))
    if "probe" in art and C == 1.0:
        return np.asarray(art["probe"], dtype=np.float64)
    key = f"{_fingerprint(art)}-{C!r}"
    if key not in _PROBE_CACHE:
        x = art["activations"].astype(np.float64)
        y = art["label"].astype(np.int64)
        train = art["split"] == "train"
        if not train.any():
            raise ValueError("artifact: has no 'train' rows to fit the safety probe on")
        _PROBE_CACHE[key] = fit_logistic(x[train], y[train], C=C).predict_proba(x)
    return _PROBE_CACHE[key]


def artifact_cascade(
    artifact: str | os.PathLike[str] | Arrays,
    *,
    expert: str,
    kind: ValueKind = "continuous",
    ridge_penalty: float = 1.0,
) -> ArtifactCascade:
    """The test pool's :class:`~ctd_stats.CascadeTable` for one expert of an artifact.

    ``artifact`` is a path to the ``.npz`` (checked against its manifest's sha256) or the loaded
    arrays. ``kind`` is the delegation value's kind (``"continuous"`` or ``"binary"``);
    ``ridge_penalty`` the DV probe's L2 strength (:func:`probes.linear.fit_ridge`).
    """
    art = _check(_load(artifact))
    column = f"expert_{expert}"
    if column not in art:
        have = sorted(k.removeprefix("expert_") for k in art if k.startswith("expert_"))
        raise ValueError(f"expert: the artifact has no expert {expert!r} (it has {have})")
    split = art["split"]
    dev, test = split == "dev", split == "test"
    if not dev.any() or not test.any():
        raise ValueError("artifact: needs 'dev' and 'test' rows")
    y = art["label"].astype(np.int64)
    p = safety_probe_scores(art)
    e = art[column].astype(np.float64)
    x = art["activations"].astype(np.float64)
    v_dev = delegation_value(y[dev], p[dev], e[dev], kind=kind)
    d = fit_ridge(x[dev], v_dev, penalty=ridge_penalty).predict(x)
    table = CascadeTable.from_arrays(
        probe=p[test], expert=e[test], dv=d[test], labels=y[test], groups=art["group"][test]
    )
    return ArtifactCascade(
        expert=expert,
        table=table,
        dev_values=v_dev,
        dev_predictions=d[dev],
        test_values=delegation_value(y[test], p[test], e[test], kind=kind),
    )
