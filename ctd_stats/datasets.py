"""Access to the reference data files (verifier scores, stakes texts).

Every file is listed in ``registry.tsv`` (shipped with the package) with its size, sha256 and a
download URL pinned to a commit. :func:`data_path` returns a local path to a verified copy:

1. if ``data_dir`` is given, or the environment variable ``CTD_STATS_DATA_DIR`` is set, the file is
   read from that folder (same relative paths as the registry) and its sha256 is checked;
2. otherwise it is downloaded once with ``pooch`` (optional extra ``data``) into the user cache
   (``CTD_STATS_CACHE_DIR`` overrides the location); pooch verifies the hash before it moves the
   download into place, so a mismatch leaves no file in the cache.

A hash mismatch is always a ``ValueError`` naming the file, the expected and the actual hash.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

__all__ = ["DATA_DIR_ENV", "RegistryEntry", "data_path", "registry", "sha256_of"]

DATA_DIR_ENV = "CTD_STATS_DATA_DIR"
CACHE_DIR_ENV = "CTD_STATS_CACHE_DIR"


@dataclass(frozen=True)
class RegistryEntry:
    """One reference file: its relative path, size in bytes, sha256 and pinned source URL."""

    name: str
    size: int
    sha256: str
    url: str


def registry() -> dict[str, RegistryEntry]:
    """All registered files, keyed by relative path.

    Keys look like ``"verifier_scores/math_w_scores_compressed.csv.gz"``.
    """
    text = resources.files("ctd_stats").joinpath("registry.tsv").read_text(encoding="utf-8")
    entries: dict[str, RegistryEntry] = {}
    for line in text.splitlines()[1:]:
        if not line.strip():
            continue
        name, size, sha, url = line.split("\t")[:4]
        entries[name] = RegistryEntry(name=name, size=int(size), sha256=sha, url=url)
    return entries


def sha256_of(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks.

    Raises
    ------
    TypeError
        ``path`` is not a path (str or os.PathLike).
    OSError
        The file cannot be read (``FileNotFoundError`` if it does not exist).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a file path, got {type(path).__name__}")
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _lookup(name: str) -> RegistryEntry:
    if not isinstance(name, str):
        raise TypeError(f"name: expected a registry key (str), got {type(name).__name__}")
    entries = registry()
    if name in entries:
        return entries[name]
    # Accept a bare file name when it is unambiguous ("math_w_scores_compressed.csv.gz").
    matches = [e for key, e in entries.items() if key.rsplit("/", 1)[-1] == name]
    if len(matches) == 1:
        return matches[0]
    raise ValueError(f"name: unknown data file {name!r}; known files: {sorted(entries)}")


def data_path(name: str, *, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Local path to the verified reference file ``name``.

    Parameters
    ----------
    name
        A registry key such as ``"verifier_scores/math_w_scores_compressed.csv.gz"`` (or its
        unambiguous base name).
    data_dir
        A folder holding the files under the registry's relative paths. Defaults to the
        environment variable ``CTD_STATS_DATA_DIR``; if neither is set the file is downloaded.

    Raises
    ------
    ValueError
        Unknown name, or the file's sha256 does not match the registry.
    FileNotFoundError
        ``data_dir`` is given but does not contain the file.
    """
    entry = _lookup(name)
    if data_dir is not None and not isinstance(data_dir, (str, os.PathLike)):
        raise TypeError(f"data_dir: expected a path, got {type(data_dir).__name__}")
    folder = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV)
    if folder:
        path = Path(folder) / entry.name
        if not path.is_file():
            raise FileNotFoundError(f"data_dir: {path} does not exist (from {folder!r})")
        actual = sha256_of(path)
        if actual != entry.sha256:
            raise ValueError(
                f"data file {entry.name}: sha256 mismatch (expected {entry.sha256}, got {actual}); "
                "the local copy is corrupt or a different version"
            )
        return path
    return _download(entry)


def _download(entry: RegistryEntry) -> Path:
    try:
        import pooch
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"downloading {entry.name} needs pooch (pip install 'ctd-stats[data]'), "
            f"or set {DATA_DIR_ENV} to a folder holding the files"
        ) from None
    cache = os.environ.get(CACHE_DIR_ENV) or str(pooch.os_cache("ctd_stats"))
    try:
        fetched = pooch.retrieve(
            url=entry.url,
            known_hash=f"sha256:{entry.sha256}",
            fname=entry.name.replace("/", "__"),
            path=cache,
            progressbar=False,
        )
    except ValueError as exc:  # pooch's hash-mismatch error; the bad download is already deleted
        raise ValueError(f"data file {entry.name}: {exc}") from None
    return Path(fetched)
