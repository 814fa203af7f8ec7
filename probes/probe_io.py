"""Fitted latent probes that ship like calibrations: exact, checksummed JSON with their features.

A live monitor (:mod:`probes.live`) reads one layer of the monitored model and applies two linear
probes to the pooled activation: the safety probe (logistic, P(high-stakes)) and the
delegation-value (DV) probe (ridge), as in the CTD paper (§4.1, §5.1). Both are only meaningful on
the features they were fitted on, so the file carries the :class:`FeatureSpec` — the model's
sha256, its block count and width, the layer, the pooling and the context — and a monitor
refuses a model that does not match it.

The file follows the format of ``ctd_stats`` calibrations (``to_json`` of a
``ThresholdCalibration``): ``{"format", "schema_version", "kind", "package_version", "fields",
"checksum"}``, where the checksum is ``sha256:`` of the canonical JSON (sorted keys, no spaces) of
everything else, so an edited or truncated file is refused. Every coefficient is a JSON number
written with Python's ``repr``, which round-trips float64 exactly.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .linear import LogisticProbe, RidgeProbe
from .store import atomic_write_bytes

__all__ = [
    "FORMAT",
    "SCHEMA_VERSION",
    "FeatureSpec",
    "LatentProbes",
    "check_model",
    "load_probes",
    "probes_from_artifact",
]

FORMAT = "probes.latent"
SCHEMA_VERSION = 1
Pooling = Literal["mean", "last"]
FloatArray = NDArray[np.float64]


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: must be a positive integer, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class FeatureSpec:
    """Which activation the probes read (CTD paper §5.1; :mod:`probes.extract`).

    The output of block ``layer``'s input norm (:func:`probes.extract.residual_norm_modules`),
    pooled by ``pooling`` (``"mean"`` or ``"last"`` token) over the first ``context`` tokens of
    the chat-templated input with its first token (BOS) dropped (``None``: the whole input), in
    the model whose weights have sha256 ``model_hash`` (``LoadedModel.source_hash``).
    """

    model_hash: str
    n_blocks: int
    hidden_size: int
    layer: int
    pooling: Pooling = "mean"
    context: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model_hash, str) or not self.model_hash:
            raise ValueError(f"model_hash: must be a non-empty string, got {self.model_hash!r}")
        _positive_int(self.n_blocks, "n_blocks")
        _positive_int(self.hidden_size, "hidden_size")
        if isinstance(self.layer, bool) or not isinstance(self.layer, int):
            raise ValueError(f"layer: must be an integer, got {self.layer!r}")
        if not 0 <= self.layer < self.n_blocks:
            raise ValueError(f"layer: {self.layer} is out of range for {self.n_blocks} blocks")
        if self.pooling not in ("mean", "last"):
            raise ValueError(f"pooling: expected 'mean' or 'last', got {self.pooling!r}")
        if self.context is not None:
            _positive_int(self.context, "context")

    def as_dict(self) -> dict[str, Any]:
        return {
            "model_hash": self.model_hash,
            "n_blocks": self.n_blocks,
            "hidden_size": self.hidden_size,
            "layer": self.layer,
            "pooling": self.pooling,
            "context": self.context,
        }


def _coef(values: ArrayLike, name: str, width: int) -> FloatArray:
    arr = np.array(values, dtype=np.float64)  # a copy: the probe owns its coefficients
    if arr.shape != (width,):
        raise ValueError(f"{name}: expected shape ({width},), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: must be finite")
    arr.setflags(write=False)
    return arr


def _scalar(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"{name}: must be finite, got {value!r}")
    return out


@dataclass(frozen=True, eq=False)
class LatentProbes:
    """The safety probe and the DV probe on the features of ``spec``.

    ``safety_scores(X) = σ(X·safety_coef + safety_intercept)`` (P(high-stakes), computed as
    :meth:`probes.linear.LogisticProbe.predict_proba` does) and ``dv_scores(X) = X·dv_coef +
    dv_intercept`` (:meth:`probes.linear.RidgeProbe.predict`), in float64. ``notes`` is free
    text for a reader (training data, penalties); it is checksummed with the rest.
    """

    spec: FeatureSpec
    safety_coef: FloatArray
    safety_intercept: float
    dv_coef: FloatArray
    dv_intercept: float
    notes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.spec, FeatureSpec):
            raise TypeError(f"spec: expected a FeatureSpec, got {type(self.spec).__name__}")
        width = self.spec.hidden_size
        object.__setattr__(self, "safety_coef", _coef(self.safety_coef, "safety_coef", width))
        object.__setattr__(self, "dv_coef", _coef(self.dv_coef, "dv_coef", width))
        object.__setattr__(
            self, "safety_intercept", _scalar(self.safety_intercept, "safety_intercept")
        )
        object.__setattr__(self, "dv_intercept", _scalar(self.dv_intercept, "dv_intercept"))
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.notes.items()):
            raise ValueError("notes: keys and values must be strings")
        object.__setattr__(self, "notes", dict(self.notes))

    @classmethod
    def from_fitted(
        cls,
        spec: FeatureSpec,
        safety: LogisticProbe,
        dv: RidgeProbe,
        *,
        notes: dict[str, str] | None = None,
    ) -> LatentProbes:
        """The probes fitted by :func:`probes.linear.fit_logistic` / :func:`~.fit_ridge`."""
        return cls(
            spec=spec,
            safety_coef=safety.coef,
            safety_intercept=safety.intercept,
            dv_coef=dv.coef,
            dv_intercept=dv.intercept,
            notes=dict(notes or {}),
        )

    def __repr__(self) -> str:
        s = self.spec
        ctx = "all" if s.context is None else f"first {s.context}"
        return (
            f"LatentProbes(layer {s.layer} of {s.n_blocks}, {s.pooling} over {ctx} tokens, "
            f"hidden {s.hidden_size}, model {s.model_hash[:12]})"
        )

    def __eq__(self, other: object) -> bool:
        if type(other) is not LatentProbes:
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # mutable-looking arrays: not hashable

    # ------------------------------------------------------------------ scores
    def _features(self, X: ArrayLike) -> FloatArray:
        x = np.asarray(X, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.spec.hidden_size:
            raise ValueError(f"X: expected shape (n, {self.spec.hidden_size}), got {np.shape(X)}")
        return x

    def safety_scores(self, X: ArrayLike) -> FloatArray:
        """P(high-stakes) per row of pooled features ``X`` (n, hidden)."""
        z = self._features(X) @ self.safety_coef + self.safety_intercept
        return np.asarray(0.5 * (1.0 + np.tanh(0.5 * z)), dtype=np.float64)

    def dv_scores(self, X: ArrayLike) -> FloatArray:
        """Predicted delegation value per row of pooled features ``X`` (n, hidden)."""
        return np.asarray(self._features(X) @ self.dv_coef + self.dv_intercept, dtype=np.float64)

    # ------------------------------------------------------------------ JSON
    def _fields(self) -> dict[str, Any]:
        return {
            "spec": self.spec.as_dict(),
            "safety_coef": self.safety_coef.tolist(),
            "safety_intercept": self.safety_intercept,
            "dv_coef": self.dv_coef.tolist(),
            "dv_intercept": self.dv_intercept,
            "notes": dict(self.notes),
        }

    def to_json(self) -> str:
        """Exact JSON with a sha256 checksum (see the module docstring)."""
        payload: dict[str, Any] = {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "kind": "LatentProbes",
            "package_version": _version(),
            "fields": self._fields(),
        }
        payload["checksum"] = _checksum(payload)
        return json.dumps(payload, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> LatentProbes:
        """Rebuild the probes written by :meth:`to_json`.

        Raises ``ValueError`` starting with ``text:`` for malformed JSON, another format or
        schema version, or a checksum mismatch (an edited or truncated file).
        """
        if not isinstance(text, str):
            raise TypeError(f"text: expected a JSON string, got {type(text).__name__}")
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"text: not valid JSON ({exc})") from None
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise ValueError(f"text: not a {FORMAT} payload")
        if payload.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(
                f"text: unknown schema_version {payload.get('schema_version')!r}; "
                f"this version reads {SCHEMA_VERSION}"
            )
        if payload.get("kind") != "LatentProbes" or "fields" not in payload:
            raise ValueError("text: malformed payload (kind or fields)")
        try:
            expected = _checksum(payload)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"text: malformed payload ({exc})") from None
        if payload.get("checksum") != expected:
            raise ValueError("text: checksum mismatch: the payload was modified or is corrupt")
        f = payload["fields"]
        try:
            return cls(
                spec=FeatureSpec(**f["spec"]),
                safety_coef=np.asarray(f["safety_coef"], dtype=np.float64),
                safety_intercept=f["safety_intercept"],
                dv_coef=np.asarray(f["dv_coef"], dtype=np.float64),
                dv_intercept=f["dv_intercept"],
                notes=f["notes"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"text: malformed payload ({exc})") from None

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_json` to ``path`` atomically (temporary file, then rename)."""
        target = Path(path)
        atomic_write_bytes(target, self.to_json().encode("utf-8"))
        return target


def _version() -> str:
    try:
        return metadata.version("ctd-stats")
    except metadata.PackageNotFoundError:
        return "unknown"


def _checksum(payload: dict[str, Any]) -> str:
    body = {k: v for k, v in payload.items() if k != "checksum"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def check_model(probes: LatentProbes, *, model_hash: str, n_blocks: int, hidden_size: int) -> None:
    """Refuse a model the probes were not fitted on (``ValueError`` starting with ``model:``).

    The model's weights must have the probes' sha256, and it must have the probes' layer and
    width: a probe applied to another model's activations returns numbers, but meaningless ones.
    """
    spec = probes.spec
    if model_hash != spec.model_hash:
        raise ValueError(
            f"model: its sha256 {model_hash[:16]}… differs from the probes' model_hash "
            f"{spec.model_hash[:16]}… (the probes were fitted on another model)"
        )
    if not 0 <= spec.layer < n_blocks:
        raise ValueError(
            f"model: has {n_blocks} blocks, so it lacks layer {spec.layer} that the probes read"
        )
    if hidden_size != spec.hidden_size:
        raise ValueError(
            f"model: hidden size {hidden_size} differs from the probes' {spec.hidden_size}"
        )


def load_probes(
    path: str | os.PathLike[str],
    *,
    model_hash: str | None = None,
    n_blocks: int | None = None,
    hidden_size: int | None = None,
) -> LatentProbes:
    """Read probes saved by :meth:`LatentProbes.save`; check them against a model if given.

    With ``model_hash`` (and optionally the model's ``n_blocks`` / ``hidden_size``), a model the
    probes were not fitted on is refused by :func:`check_model`.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"path: {p} does not exist")
    probes = LatentProbes.from_json(p.read_text(encoding="utf-8"))
    if model_hash is not None:
        check_model(
            probes,
            model_hash=model_hash,
            n_blocks=probes.spec.n_blocks if n_blocks is None else n_blocks,
            hidden_size=probes.spec.hidden_size if hidden_size is None else hidden_size,
        )
    return probes


def probes_from_artifact(
    path: str | os.PathLike[str],
    *,
    expert: str,
    kind: Literal["continuous", "binary"] = "continuous",
    C: float = 1.0,
    ridge_penalty: float = 1.0,
) -> LatentProbes:
    """The probes of an activation artifact (``python -m probes artifacts``), fitted as there.

    The artifact stores the chosen features, not the probes' weights, so they are fitted again
    from the stored (float16) activations exactly as :func:`probes.pipeline.artifact_cascade`
    does (CTD paper §5.1): the safety probe (logistic, ``C``) on ``train``, the DV probe (ridge,
    ``ridge_penalty``) on ``dev`` to the delegation value of ``expert`` (§4.1). Their scores
    on the artifact's rows are therefore those of the offline cascade. The feature spec (model
    sha256, blocks, width, layer, pooling, context) comes from the artifact's manifest.
    """
    from ctd_stats import delegation_value

    from .artifact import load_artifact
    from .linear import fit_logistic, fit_ridge

    p = Path(path)
    manifest = json.loads(
        p.with_name(p.name.removesuffix(".npz") + ".manifest.json").read_text(encoding="utf-8")
    )
    art = load_artifact(p)
    column = f"expert_{expert}"
    if column not in art:
        raise ValueError(f"expert: the artifact has no expert {expert!r}")
    mon = manifest["monitored_model"]
    spec = FeatureSpec(
        model_hash=str(mon["gguf_sha256"]),
        n_blocks=int(mon["n_blocks"]),
        hidden_size=int(mon["hidden_size"]),
        layer=int(manifest["layer"]),
        pooling=manifest["pooling"],
        context=int(manifest["context"]),
    )
    x = art["activations"].astype(np.float64)
    y = art["label"].astype(np.int64)
    train, dev = art["split"] == "train", art["split"] == "dev"
    safety = fit_logistic(x[train], y[train], C=C)
    p_dev = safety.predict_proba(x[dev])
    e_dev = art[column][dev].astype(np.float64)
    dv = fit_ridge(x[dev], delegation_value(y[dev], p_dev, e_dev, kind=kind), penalty=ridge_penalty)
    notes = {
        "artifact": p.name,
        "artifact_sha256": str(manifest.get("npz_sha256", "")),
        "safety_probe": f"logistic regression, C={C!r}, fitted on train",
        "dv_probe": f"ridge, penalty {ridge_penalty!r}, fitted on dev to the {kind} delegation "
        f"value of expert {expert!r}",
    }
    return LatentProbes.from_fitted(spec, safety, dv, notes=notes)
