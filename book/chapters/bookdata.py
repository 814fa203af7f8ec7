"""The book's real-data pipeline: the committed activation artifact as cascade tables.

The artifact (``book/artifacts/stakes_smollm2.npz``, built once by ``python -m probes artifacts``;
provenance in its ``.manifest.json``) holds SmolLM2-135M-Instruct activations of the stakes texts
and two real experts' scores: the weak one (SmolLM2 itself, likelihood continuation, as in the
paper's weak-expert set-up) and a strong one (a classifier on all-MiniLM-L6-v2 embeddings of the
whole conversation, fitted on train + dev and cross-fitted on dev; not the paper's 27B LLM).
:func:`probes.pipeline.artifact_cascade` turns it into the test pool's
:class:`ctd_stats.CascadeTable` as in the CTD paper (§5.1): safety probe (logistic, C = 1) fitted
on ``train``, DV probe (ridge, penalty 1) fitted on ``dev``, ``test`` = the calibration / evaluation
pool.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

# tqdm.auto (imported by probes) warns at import when ipywidgets is absent; bars are off here.
warnings.filterwarnings("ignore", message="IProgress not found")
from ctd_stats.cascade.metrics import ValueKind  # noqa: E402
from probes.pipeline import ArtifactCascade, artifact_cascade  # noqa: E402

# CTD_BOOK_ARTIFACT points the book at another build of the artifact (e.g. a new one under test).
ARTIFACT = Path(
    os.environ.get(
        "CTD_BOOK_ARTIFACT",
        Path(__file__).resolve().parent.parent / "artifacts" / "stakes_smollm2.npz",
    )
)
EXPERTS = {
    "smollm2": "SmolLM2-135M (weak: the monitored model judging its own inputs)",
    "minilm": "MiniLM-L6 classifier (strong: embeddings + logistic, cross-fitted on dev)",
}


def manifest() -> dict:
    return json.loads(ARTIFACT.with_name(ARTIFACT.stem + ".manifest.json").read_text())


def load_stakes_cascade(expert: str, *, kind: ValueKind = "continuous") -> ArtifactCascade:
    """The test pool's cascade table for ``expert`` (:func:`probes.pipeline.artifact_cascade`)."""
    return artifact_cascade(ARTIFACT, expert=expert, kind=kind)
