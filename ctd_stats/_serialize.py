"""Exact, tamper-evident JSON for calibration results and monitor states.

A calibrated threshold is computed offline and used in a serving process; a running monitor is
checkpointed and restored. Both need a file that comes back *exactly* (every float bit-for-bit,
±∞ included) and that refuses to load when it was edited, truncated or written by a schema this
version does not know. The payload is::

    {"format": "ctd_stats", "schema_version": 1, "kind": "<class name>",
     "package_version": "...", "guarantee": "<the guarantee in words>", "n": <calibration size>,
     "calibration_sha256": "<sha256 of the calibration scores>" | null,
     "settings": {...}, "fields": {...}, "checksum": "sha256:<hex>"}

``fields`` holds every dataclass field (so ``from_json`` rebuilds the same object); ``settings``
repeats the user-chosen settings for a human reader. The checksum is the sha256 of the canonical
JSON of everything else. Python's ``repr`` of a float round-trips exactly, so plain JSON numbers
are exact; non-finite values, arrays, tuples and nested results are tagged objects.

Classes opt in by inheriting :class:`JSONSerializable` (frozen dataclasses only) and declare a
stable, qualified *kind* — the name the payload is filed under, independent of where the class
lives — and, separately, exact equality::

    @exact_eq
    @dataclass(frozen=True)
    class LTTResult(JSONSerializable, kind="ctd_stats.LTTResult"): ...

The qualified kind is ``"<namespace>.<name>"``. The payload's ``format`` field already names the
``ctd_stats`` namespace, so a kind in it is written without the ``ctd_stats.`` prefix
(``"kind": "LTTResult"``, as every payload since 1.0) and any other namespace in full. Two classes
claiming one kind raise ``TypeError`` when the second is defined, and a class that declares no
kind is a ``TypeError`` too; equality is exactly what the class declares.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

import numpy as np
from numpy.typing import ArrayLike

from ._validation import plain
from ._version import __version__

__all__ = ["SCHEMA_VERSION", "JSONSerializable", "array_sha256", "exact_eq"]

SCHEMA_VERSION = 1
_FORMAT = "ctd_stats"
#: Qualified kind -> class, e.g. ``"ctd_stats.LTTResult" -> LTTResult``.
_REGISTRY: dict[str, type[JSONSerializable]] = {}
_HEADER_KEYS = (
    "format",
    "schema_version",
    "kind",
    "package_version",
    "guarantee",
    "n",
    "calibration_sha256",
    "settings",
    "fields",
)

T = TypeVar("T", bound="JSONSerializable")
C = TypeVar("C", bound=type)


def array_sha256(values: ArrayLike) -> str:
    """sha256 of an array's float64 bytes (C order) and shape: identifies calibration scores."""
    arr = np.ascontiguousarray(np.asarray(values, dtype=np.float64))
    h = hashlib.sha256(repr(arr.shape).encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def _package_version() -> str:
    return __version__


def _qualified(kind: str) -> str:
    """The registry key of a payload's kind: a kind without a namespace is in ``ctd_stats``."""
    return kind if "." in kind else f"{_FORMAT}.{kind}"


def _written(kind: str) -> str:
    """The kind as a payload writes it: the ``ctd_stats.`` namespace is implied by ``format``."""
    prefix = f"{_FORMAT}."
    return kind[len(prefix) :] if kind.startswith(prefix) else kind


def _register(cls: type[JSONSerializable], kind: str) -> None:
    if "." not in kind or kind.startswith(".") or kind.endswith("."):
        raise TypeError(f"kind: expected a qualified name like 'ctd_stats.X', got {plain(kind)}")
    claimed = _REGISTRY.get(kind)
    if claimed is not None and (claimed.__module__, claimed.__qualname__) != (
        cls.__module__,
        cls.__qualname__,
    ):  # the same class defined again (a module reloaded) may take its kind back
        raise TypeError(
            f"kind: {kind!r} is already claimed by {claimed.__module__}.{claimed.__qualname__}; "
            f"{cls.__module__}.{cls.__qualname__} must declare another kind"
        )
    _REGISTRY[kind] = cls
    cls._json_kind = kind


# --------------------------------------------------------------------------- encoding
def _encode_float(v: float) -> Any:
    if math.isfinite(v):
        return v
    return {"__float__": "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")}


def _encode(value: Any) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return _encode_float(float(value))
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"cannot serialise an array of dtype {value.dtype}")
        flat = value.ravel().tolist()
        data = [_encode_float(x) for x in flat] if value.dtype.kind == "f" else flat
        return {"__ndarray__": {"dtype": value.dtype.str, "shape": list(value.shape), "data": data}}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("cannot serialise a mapping with non-string keys")
        return {"__dict__": {k: _encode(v) for k, v in value.items()}}
    if isinstance(value, JSONSerializable):
        kind = _written(type(value)._json_kind)
        return {"__result__": {"kind": kind, "fields": value._fields_json()}}
    raise TypeError(f"cannot serialise a value of type {type(value).__name__}")


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) != 1:
        raise ValueError(f"text: malformed payload (untagged object with keys {sorted(value)})")
    ((tag, body),) = value.items()
    if tag == "__float__":
        if body not in ("nan", "inf", "-inf"):
            raise ValueError(f"text: malformed payload (unknown float {plain(body)})")
        return float(body)
    if tag == "__ndarray__":
        dtype = np.dtype(body["dtype"])
        if dtype.kind not in "biuf":
            raise ValueError(f"text: malformed payload (array dtype {dtype})")
        data = [_decode(x) for x in body["data"]]
        return np.array(data, dtype=dtype).reshape(body["shape"])
    if tag == "__tuple__":
        return tuple(_decode(v) for v in body)
    if tag == "__dict__":
        return {str(k): _decode(v) for k, v in body.items()}
    if tag == "__result__":
        return _build(body["kind"], body["fields"])
    raise ValueError(f"text: malformed payload (unknown tag {plain(tag)})")


def _build(kind: str, fields: Any) -> JSONSerializable:
    cls = _REGISTRY.get(_qualified(kind)) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"text: unknown result kind {plain(kind)}")
    if not isinstance(fields, dict):
        raise ValueError(f"text: malformed payload (fields of {kind} are not an object)")
    init = [f for f in dataclasses.fields(cls) if f.init]
    names = {f.name for f in init}
    # A field added later with a default may be absent from an older payload (a 1.0 file).
    required = {
        f.name
        for f in init
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    if not required <= set(fields) <= names:
        raise ValueError(
            f"text: fields of {kind} do not match this version "
            f"(missing {sorted(required - set(fields))}, unexpected {sorted(set(fields) - names)})"
        )
    decoded = {k: _decode(v) for k, v in fields.items()}
    return cls._from_fields(decoded)


def _canonical(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _checksum(payload: Mapping[str, Any]) -> str:
    body = {k: payload[k] for k in _HEADER_KEYS}
    return "sha256:" + hashlib.sha256(_canonical(body).encode()).hexdigest()


# --------------------------------------------------------------------------- equality
def _values_equal(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))
        )
    if isinstance(a, (tuple, list)):
        return (
            type(a) is type(b)
            and len(a) == len(b)
            and all(_values_equal(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, Mapping):
        return (
            isinstance(b, Mapping)
            and a.keys() == b.keys()
            and all(_values_equal(a[k], b[k]) for k in a)
        )
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def _fields_equal(self: Any, other: Any) -> Any:  # bool, or NotImplemented
    """Field-by-field equality; arrays equal when dtype, shape and values (NaN too) agree."""
    if type(other) is not type(self):
        return NotImplemented
    return all(
        _values_equal(getattr(self, f.name), getattr(other, f.name))
        for f in dataclasses.fields(self)
    )


def exact_eq(cls: C) -> C:
    """Class decorator: ``==`` compares fields exactly, arrays by dtype, shape and values.

    The dataclass-generated ``__eq__`` compares field tuples, which raises on array fields; with
    this, ``loaded == original`` holds for a result read back from its JSON (NaN equals NaN).
    Works above or below ``@dataclass``; ``__hash__`` is left as the dataclass makes it.
    """
    setattr(cls, "__eq__", _fields_equal)  # noqa: B010  (a class attribute, not an instance's)
    return cls


# --------------------------------------------------------------------------- the mixin
class JSONSerializable:
    """Mixin for frozen dataclasses: ``to_json()`` and ``from_json(text)``, exact round trip.

    Declare the kind as a class keyword, ``class X(JSONSerializable, kind="ctd_stats.X")``.
    Subclasses may override :meth:`_json_meta` to state their guarantee, calibration size, the
    sha256 of the calibration scores and the user-chosen settings.
    """

    #: Set by ``@dataclass`` on every subclass (declared so mypy sees a dataclass instance).
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]
    #: The qualified kind this class is filed under (set from the ``kind=`` class keyword).
    _json_kind: ClassVar[str] = ""
    _json_guarantee: ClassVar[str] = ""
    #: Fields repeated under ``settings`` in the header, for a human reader of the file.
    _json_settings: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, *, kind: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if kind is None:
            raise TypeError(
                f"kind: {cls.__module__}.{cls.__qualname__} must declare its payload kind, "
                f"e.g. class {cls.__name__}(JSONSerializable, kind='ctd_stats.{cls.__name__}')"
            )
        _register(cls, kind)

    # Hooks -----------------------------------------------------------------
    def _json_meta(self) -> dict[str, Any]:
        """``guarantee``, ``n``, ``calibration_sha256`` and ``settings`` for the header.

        By default the object's own ``guarantee`` / ``n`` / ``calibration_sha256`` fields (where
        it has them; else ``_json_guarantee`` and ``None``) and its ``_json_settings`` fields.
        """
        return {
            "guarantee": getattr(self, "guarantee", self._json_guarantee),
            "n": getattr(self, "n", None),
            "calibration_sha256": getattr(self, "calibration_sha256", None),
            "settings": {name: getattr(self, name) for name in self._json_settings},
        }

    @classmethod
    def _from_fields(cls: type[T], fields: dict[str, Any]) -> T:
        return cls(**fields)

    def _fields_json(self) -> dict[str, Any]:
        return {f.name: _encode(getattr(self, f.name)) for f in dataclasses.fields(self) if f.init}

    # Public ------------------------------------------------------------------
    def to_json(self) -> str:
        """Exact JSON: schema version, guarantee, settings, n, data hash and a checksum."""
        meta = self._json_meta()
        payload: dict[str, Any] = {
            "format": _FORMAT,
            "schema_version": SCHEMA_VERSION,
            "kind": _written(self._json_kind),
            "package_version": _package_version(),
            "guarantee": str(meta.get("guarantee", self._json_guarantee)),
            "n": meta.get("n"),
            "calibration_sha256": meta.get("calibration_sha256"),
            "settings": _encode(dict(meta.get("settings", {})))["__dict__"],
            "fields": self._fields_json(),
        }
        payload["checksum"] = _checksum(payload)
        return json.dumps(payload, allow_nan=False)

    @classmethod
    def from_json(cls: type[T], text: str | bytes | bytearray) -> T:
        """Rebuild the object written by :meth:`to_json`.

        ``text`` is the JSON as a ``str``, or as UTF-8 ``bytes`` / ``bytearray`` (what
        ``Path.read_bytes()`` returns), as :func:`json.loads` accepts.

        Raises ``ValueError`` (message starting with ``text:``) for malformed JSON or bytes that
        are not UTF-8, a payload that is not this kind, an unknown schema version, or a checksum
        mismatch (an edited file); ``TypeError`` if ``text`` is neither a string nor bytes.
        """
        if not isinstance(text, (str, bytes, bytearray)):
            raise TypeError(f"text: expected a JSON string or bytes, got {type(text).__name__}")
        try:
            payload = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"text: not valid JSON ({exc})") from None
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise ValueError("text: not a ctd_stats payload (no 'format': 'ctd_stats')")
        version = payload.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(
                f"text: unknown schema_version {plain(version)}; this ctd_stats "
                f"{_package_version()} reads version {SCHEMA_VERSION}"
            )
        missing = [k for k in (*_HEADER_KEYS, "checksum") if k not in payload]
        if missing:
            raise ValueError(f"text: malformed payload (missing {missing})")
        try:
            expected = _checksum(payload)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"text: malformed payload ({exc})") from None
        if payload["checksum"] != expected:
            raise ValueError("text: checksum mismatch: the payload was modified or is corrupt")
        kind = payload["kind"]
        if not isinstance(kind, str) or _qualified(kind) != cls._json_kind:
            raise ValueError(f"text: holds a {kind!r} payload, not {_written(cls._json_kind)!r}")
        try:
            obj = _build(kind, payload["fields"])
        except ValueError as exc:
            if str(exc).startswith("text:"):
                raise
            raise ValueError(f"text: malformed payload ({exc})") from None
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"text: malformed payload ({plain(exc)})") from None
        assert isinstance(obj, cls)
        return obj
