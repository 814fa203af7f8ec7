"""On-disk activation store: ``.npy`` shards, one commit record per shard, and a JSON manifest.

The manifest records what the activations are (:class:`StoreMeta`: model, model file hash or
revision, layers, pooling, dtype, token limit, dataset hash, number of examples, hidden size) and,
once the store is finalised, every shard's row range and sha256.

Writes are crash-safe, so that a process killed at any instant (``SIGKILL``, power loss of one
rank) never leaves a file that is later read as data:

* every file (shard, record, manifest) is written to a temporary ``.tmp-*`` name, flushed with
  ``fsync`` and renamed into place (``os.replace`` is atomic); temporary files are never read;
* a shard ``shard-<start>-<stop>.npy`` counts only once its *commit record*
  ``shard-<start>-<stop>.json`` (row range, shape, sha256) exists; the record is written after the
  shard, so a shard without a record (killed in between) is ignored and recomputed, and a record
  that does not parse is ignored likewise;
* every read checks the shard's sha256 and shape against its record: a mismatch (a torn or
  tampered file) raises ``ValueError``, it is never returned as activations;
  :meth:`ActivationStore.verify` checks every committed shard's size and sha256 without loading it
  (a resumed extraction does so before it skips the shards already stored).

Several processes (the ranks of a data-parallel run, :mod:`probes.distributed`) can write disjoint
shards of one store at the same time: each writes only its own shards and records, and one process
(rank 0) writes the manifest with :meth:`ActivationStore.finalize` once all are done. Re-opening a
store with the same metadata resumes: :meth:`ActivationStore.has` tells which row ranges are done.

Opening a store whose manifest disagrees with the requested metadata raises ``ValueError`` with
the differing fields. Stores written by the earlier single-process format (manifest format 1,
``shard-00000.npy`` names) are read unchanged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import signal
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "FAILPOINT_ENV",
    "MANIFEST_NAME",
    "ActivationStore",
    "Activations",
    "ShardRecord",
    "StoreMeta",
    "atomic_write_bytes",
    "failpoint",
]

#: Stored activations: float16 or float32, shape ``(rows, layers, hidden)``.
Activations = NDArray[np.floating[Any]]

MANIFEST_NAME = "manifest.json"
#: Fault injection for the crash tests: ``"<site>:<n>"`` sends ``SIGKILL`` to this process at the
#: ``n``-th (1-based) time it reaches ``site`` (``write``: half of a shard's temporary file written;
#: ``shard``: shard renamed into place, record not yet written; ``record``: record written).
FAILPOINT_ENV = "CTD_PROBES_FAILPOINT"
_FORMAT = 2
_READ_FORMATS = (1, 2)
_DTYPES = ("float16", "float32")
_RECORD = re.compile(r"^shard-(\d+)-(\d+)\.json$")
_hits: dict[str, int] = {}


class ShardRecord(TypedDict):
    """A shard's commit record (``shard-<start>-<stop>.json``)."""

    file: str
    start: int
    stop: int
    shape: list[int]
    sha256: str
    size: NotRequired[int]  # bytes of the ``.npy`` file (absent in records of older stores)


def _as_record(data: Any) -> ShardRecord:
    """A commit record read from JSON; ``KeyError``/``TypeError``/``ValueError`` if malformed."""
    if not isinstance(data["sha256"], str):
        raise TypeError("sha256: not a string")
    rec = ShardRecord(
        file=str(data["file"]),
        start=int(data["start"]),
        stop=int(data["stop"]),
        shape=[int(x) for x in data["shape"]],
        sha256=data["sha256"],
    )
    if "size" in data:
        rec["size"] = int(data["size"])
    return rec


def failpoint(site: str) -> None:
    """Kill this process with ``SIGKILL`` at the site named by :data:`FAILPOINT_ENV` (tests)."""
    spec = os.environ.get(FAILPOINT_ENV)
    if not spec:
        return
    want, _, count = spec.partition(":")
    if want != site:
        return
    _hits[site] = _hits.get(site, 0) + 1
    if _hits[site] == int(count or "1"):
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class StoreMeta:
    """What a store holds; two stores are interchangeable iff their metadata are equal."""

    model: str
    model_hash: str
    layers: tuple[int, ...]
    pooling: str
    dtype: str
    max_tokens: int | None
    dataset_hash: str
    n_examples: int
    hidden_size: int

    def __post_init__(self) -> None:
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype: expected one of {_DTYPES}, got {self.dtype!r}")
        if not self.layers:
            raise ValueError("layers: must not be empty")
        if self.n_examples < 0 or self.hidden_size < 1:
            raise ValueError("n_examples/hidden_size: must be non-negative / positive")

    def to_json(self) -> dict[str, object]:
        out = dataclasses.asdict(self)
        out["layers"] = list(self.layers)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StoreMeta:
        data = dict(data)
        data["layers"] = tuple(int(x) for x in data["layers"])
        return cls(**data)


def atomic_write_bytes(path: Path, payload: bytes, *, site: str | None = None) -> None:
    """Write ``payload`` to a temporary file, ``fsync`` it and rename it to ``path`` (atomic).

    ``site`` names the :func:`failpoint` reached once the file is in place (crash tests).
    """
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            if site is not None:
                half = len(payload) // 2
                fh.write(payload[:half])
                fh.flush()
                failpoint("write")
                fh.write(payload[half:])
            else:
                fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if site is not None:
        failpoint(site)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class ActivationStore:
    """Sharded pooled activations of shape ``(n_examples, len(layers), hidden_size)``.

    ``create=False`` opens an existing store only (the non-zero ranks of a distributed run, which
    open it after rank 0 created it).
    """

    def __init__(
        self, directory: str | os.PathLike[str], meta: StoreMeta, *, create: bool = True
    ) -> None:
        self.directory = Path(directory)
        self.meta = meta
        manifest = self.directory / MANIFEST_NAME
        if not manifest.is_file() and not create:
            raise ValueError(f"directory: {self.directory} holds no store ({MANIFEST_NAME})")
        self.directory.mkdir(parents=True, exist_ok=True)
        self._listed: list[ShardRecord] = []
        if manifest.is_file():
            try:
                data = json.loads(manifest.read_text(encoding="utf-8"))
                found = StoreMeta.from_json(data["meta"])
                self._listed = [_as_record(s) for s in data["shards"]]
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"store {self.directory}: unreadable manifest ({exc})") from None
            if data.get("format") not in _READ_FORMATS:
                raise ValueError(f"store {self.directory}: unknown format {data.get('format')!r}")
            if found != meta:
                diff = {
                    k: (v, getattr(meta, k))
                    for k, v in dataclasses.asdict(found).items()
                    if v != getattr(meta, k)
                }
                raise ValueError(
                    f"store {self.directory}: holds different activations (stored vs requested: "
                    f"{diff}); use another directory or delete this one"
                )
        else:
            self._write_manifest([])
        self._records: dict[tuple[int, int], ShardRecord] = {}
        self.refresh()

    # ----------------------------------------------------------------------------- bookkeeping
    def refresh(self) -> None:
        """Re-read the commit records on disk (those written by other processes too)."""
        records: dict[tuple[int, int], ShardRecord] = {}
        for rec in self._listed:
            records[(int(rec["start"]), int(rec["stop"]))] = rec
        for path in sorted(self.directory.glob("shard-*.json")):
            m = _RECORD.match(path.name)
            if m is None:
                continue
            try:
                rec = _as_record(json.loads(path.read_text(encoding="utf-8")))
                key = (rec["start"], rec["stop"])
                ok = key == (int(m.group(1)), int(m.group(2)))
            except (ValueError, KeyError, TypeError):
                continue  # not a committed record: the shard is recomputed
            if ok and (self.directory / str(rec["file"])).is_file():
                records[key] = rec
        self._records = records

    @property
    def shards(self) -> list[ShardRecord]:
        """Commit records of the shards covering rows ``0 .. n_done`` (in row order)."""
        by_start: dict[int, ShardRecord] = {}
        for (start, stop), rec in sorted(self._records.items()):
            best = by_start.get(start)
            if best is None or int(best["stop"]) < stop:
                by_start[start] = rec
        out: list[ShardRecord] = []
        pos = 0
        while pos in by_start and int(by_start[pos]["stop"]) > pos:
            out.append(by_start[pos])
            pos = int(by_start[pos]["stop"])
        return out

    def has(self, start: int, stop: int) -> bool:
        """Whether rows ``start:stop`` are stored as one committed shard."""
        return (int(start), int(stop)) in self._records

    @property
    def n_done(self) -> int:
        """Rows held by committed shards, counted from row 0 without a gap."""
        chain = self.shards
        return int(chain[-1]["stop"]) if chain else 0

    @property
    def complete(self) -> bool:
        return self.n_done == self.meta.n_examples

    def _write_manifest(self, shards: Sequence[ShardRecord]) -> None:
        payload = {"format": _FORMAT, "meta": self.meta.to_json(), "shards": list(shards)}
        atomic_write_bytes(
            self.directory / MANIFEST_NAME, json.dumps(payload, indent=1).encode("utf-8")
        )

    def finalize(self) -> bool:
        """Write the manifest listing the shards that cover the rows; returns :attr:`complete`."""
        self.refresh()
        chain = self.shards
        self._write_manifest(chain)
        self._listed = chain
        _fsync_dir(self.directory)
        return self.complete

    # ----------------------------------------------------------------------------- writing
    def _check_block(self, block: Activations) -> Activations:
        arr = np.asarray(block)
        shape = (len(self.meta.layers), self.meta.hidden_size)
        if arr.ndim != 3 or arr.shape[1:] != shape:
            raise ValueError(
                f"block: expected shape (rows, {shape[0]}, {shape[1]}), got {arr.shape}"
            )
        if not np.isfinite(arr).all():
            raise ValueError("block: contains NaN or infinite activations")
        return arr

    def write_shard(self, start: int, block: Activations) -> ShardRecord:
        """Store ``block`` as rows ``start:start+len(block)``: shard, then its commit record.

        Safe to call from several processes for disjoint row ranges; rewriting a range replaces
        its shard atomically.
        """
        arr = self._check_block(block)
        if start < 0:
            raise ValueError(f"start: must be non-negative, got {start!r}")
        stop = int(start) + arr.shape[0]
        if stop > self.meta.n_examples:
            raise ValueError(f"block: {stop} rows would exceed n_examples={self.meta.n_examples}")
        arr = arr.astype(self.meta.dtype)
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        payload = buf.getvalue()
        stem = f"shard-{int(start):010d}-{stop:010d}"
        atomic_write_bytes(self.directory / f"{stem}.npy", payload, site="shard")
        record = ShardRecord(
            file=f"{stem}.npy",
            start=int(start),
            stop=stop,
            shape=list(arr.shape),
            sha256=hashlib.sha256(payload).hexdigest(),
            size=len(payload),
        )
        atomic_write_bytes(
            self.directory / f"{stem}.json", json.dumps(record).encode("utf-8"), site="record"
        )
        self._records[(int(start), stop)] = record
        return record

    def append(self, block: Activations) -> None:
        """Write the next rows (after :attr:`n_done`) as one shard and update the manifest."""
        self.write_shard(self.n_done, block)
        self.finalize()

    # ----------------------------------------------------------------------------- reading
    def _payload(self, record: ShardRecord) -> tuple[bytes | None, str]:
        """The shard's bytes and, when they disagree with its record, why (else ``""``)."""
        path = self.directory / str(record["file"])
        if not path.is_file():
            return None, f"shard {record['file']} is missing"
        payload = path.read_bytes()  # hash and parse the same bytes
        size = record.get("size")
        if size is not None and len(payload) != size:
            return payload, (
                f"shard {record['file']} is corrupt or tampered with "
                f"({len(payload)} bytes, record says {size})"
            )
        actual = hashlib.sha256(payload).hexdigest()
        if actual != record["sha256"]:
            return payload, (
                f"shard {record['file']} is corrupt or tampered with "
                f"(sha256 {actual}, record says {record['sha256']})"
            )
        return payload, ""

    def verify(self) -> list[ShardRecord]:
        """Commit records whose shard is missing or differs from them in size or sha256.

        Re-reads the records on disk first; every committed shard is read once (not parsed).
        """
        self.refresh()
        return [rec for rec in self._records.values() if self._payload(rec)[1]]

    def read_shard(self, record: ShardRecord) -> Activations:
        """One shard's rows, checked against the size, sha256 and shape of its record."""
        payload, problem = self._payload(record)
        if problem or payload is None:
            raise ValueError(f"store {self.directory}: {problem}")
        arr: Activations = np.load(io.BytesIO(payload), allow_pickle=False)
        rows = int(record["stop"]) - int(record["start"])
        if arr.shape != (rows, len(self.meta.layers), self.meta.hidden_size):
            raise ValueError(
                f"store {self.directory}: shard {record['file']} has shape {arr.shape}"
            )
        return arr

    def load(self, *, allow_partial: bool = False) -> Activations:
        """All stored rows, every shard checked against its recorded sha256 and shape."""
        if not self.complete and not allow_partial:
            raise ValueError(
                f"store {self.directory}: incomplete ({self.n_done}/{self.meta.n_examples} rows)"
            )
        parts = [self.read_shard(rec) for rec in self.shards]
        if not parts:
            return np.zeros((0, len(self.meta.layers), self.meta.hidden_size), self.meta.dtype)
        return np.concatenate(parts, axis=0)
