"""Access to the reference data files (verifier scores, stakes texts).

Every file is listed in ``registry.tsv`` (shipped with the package) with its size, sha256 and a
download URL pinned to a commit. :func:`data_path` returns a local path to a verified copy,
looking in this order (the README's "Data" section says the same, and a test checks both):

1. the folder given as ``data_dir=``;
2. otherwise the folder in the environment variable ``CTD_STATS_DATA_DIR`` (when set and not
   empty);
3. otherwise the download cache: the folder in ``CTD_STATS_CACHE_DIR``, or pooch's user cache
   (``pooch.os_cache("ctd_stats")``, e.g. ``~/.cache/ctd_stats`` on Linux). A file not cached
   yet is downloaded once with ``pooch`` (optional extra ``data``); pooch writes to a temporary
   file and moves it into place only after the hash matched, so a failed or partial download
   leaves no file behind.

In a folder (1, 2) the files keep the registry's relative paths
(``verifier_scores/math_w_scores_compressed.csv.gz``); a file that is missing there is an
error, never a download. A hash mismatch is a ``ValueError`` naming the file, the expected and
the actual hash. A file that can be neither found nor downloaded (no network, no pooch) is one
``OSError`` naming the file and ``CTD_STATS_DATA_DIR``, without the network library's traceback.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ._validation import plain

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
    raise ValueError(f"name: unknown data file {plain(name)}; known files: {sorted(entries)}")


def data_path(name: str, *, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Local path to the verified reference file ``name``.

    Parameters
    ----------
    name
        A registry key such as ``"verifier_scores/math_w_scores_compressed.csv.gz"`` (or its
        unambiguous base name).
    data_dir
        A folder holding the files under the registry's relative paths. Defaults to the
        environment variable ``CTD_STATS_DATA_DIR``; if neither is set the file comes from the
        download cache (downloaded once if needed; see the module docstring).

    Returns
    -------
    Path
        The verified file.

    Raises
    ------
    ValueError
        Unknown name, or the file's sha256 does not match the registry.
    FileNotFoundError
        The folder (``data_dir`` or ``CTD_STATS_DATA_DIR``) does not contain the file.
    OSError
        No folder is set and the file could not be downloaded (no network, or pooch missing).
    """
    entry = _lookup(name)
    if data_dir is not None and not isinstance(data_dir, (str, os.PathLike)):
        raise TypeError(f"data_dir: expected a path, got {type(data_dir).__name__}")
    if data_dir is not None:
        return _from_folder(entry, Path(data_dir), "data_dir")
    folder = os.environ.get(DATA_DIR_ENV)
    if folder:
        return _from_folder(entry, Path(folder), DATA_DIR_ENV)
    return _download(entry)


def _from_folder(entry: RegistryEntry, folder: Path, source: str) -> Path:
    path = folder / entry.name
    if not path.is_file():
        raise FileNotFoundError(
            f"{source}: data file {entry.name} not found: {path} does not exist "
            f"(the folder given by {source} must hold the files under their registry paths)"
        )
    actual = sha256_of(path)
    if actual != entry.sha256:
        raise ValueError(
            f"data file {entry.name}: sha256 mismatch (expected {entry.sha256}, got {actual}); "
            "the local copy is corrupt or a different version"
        )
    return path


def _download(entry: RegistryEntry) -> Path:
    hint = (
        f"set {DATA_DIR_ENV} to a folder holding the reference files "
        f"(here: {entry.name} under it), or pass data_dir="
    )
    try:
        import pooch
    except ImportError:  # pragma: no cover - depends on the environment
        raise OSError(
            f"data file {entry.name}: {DATA_DIR_ENV} is not set and downloading needs pooch "
            f"(pip install 'ctd-stats[data]'); {hint}"
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
    except OSError as exc:  # requests' errors are OSErrors: no network, refused, cut short
        # ``from None``: the user needs the file name and the fix, not the HTTP stack.
        raise OSError(
            f"data file {entry.name}: {DATA_DIR_ENV} is not set and the download from "
            f"{entry.url} into {cache} failed ({type(exc).__name__}: {_first_line(exc)}); {hint}"
        ) from None
    return Path(fetched)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    if not text:
        return "no details"
    return text[0] if len(text[0]) <= 200 else text[0][:200] + "…"
