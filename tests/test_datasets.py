"""Reference-data registry and verified access."""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ctd_stats import datasets, load_verifier_scores

README = Path(__file__).resolve().parents[1] / "README.md"
MATH = "verifier_scores/math_w_scores_compressed.csv.gz"


def test_registry_lists_every_manifest_file() -> None:
    reg = datasets.registry()
    assert len(reg) == 14
    entry = reg["verifier_scores/math_w_scores_compressed.csv.gz"]
    assert len(entry.sha256) == 64 and entry.url.startswith("https://") and entry.size > 0


def test_local_folder_is_verified(data_dir: Path) -> None:
    path = datasets.data_path("verifier_scores/math_w_scores_compressed.csv.gz")
    assert path.is_file() and path.stat().st_size == 632630
    # A bare file name works when unambiguous.
    assert datasets.data_path("math_w_scores_compressed.csv.gz", data_dir=data_dir) == path


def test_hash_mismatch_is_a_clear_error(tmp_path: Path, data_dir: Path) -> None:
    name = "verifier_scores/math_w_scores_compressed.csv.gz"
    (tmp_path / "verifier_scores").mkdir()
    target = tmp_path / name
    shutil.copy(data_dir / name, target)
    with target.open("r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\x01\x02")
    with pytest.raises(ValueError, match="sha256 mismatch"):
        datasets.data_path(name, data_dir=tmp_path)


def test_missing_and_unknown_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"^data_dir: data file verifier_scores/math"):
        datasets.data_path("verifier_scores/math_w_scores_compressed.csv.gz", data_dir=tmp_path)
    with pytest.raises(ValueError, match="name: unknown data file"):
        datasets.data_path("nope.csv", data_dir=tmp_path)


@pytest.fixture
def local_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server on the loopback address serving ``tmp_path/served`` (no network needed)."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def test_download_mismatch_leaves_no_file_in_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, local_server: tuple[str, Path]
) -> None:
    pytest.importorskip("pooch")
    base_url, root = local_server
    (root / "y.csv.gz").write_bytes(b"not the right bytes")
    url = f"{base_url}/y.csv.gz"
    cache = tmp_path / "cache"
    monkeypatch.setenv(datasets.CACHE_DIR_ENV, str(cache))
    wrong = datasets.RegistryEntry(name="x/y.csv.gz", size=1, sha256="0" * 64, url=url)
    with pytest.raises(ValueError, match=r"x/y\.csv\.gz"):
        datasets._download(wrong)
    assert not [p for p in cache.rglob("*") if p.is_file()]
    # The right hash downloads and caches the file.
    good = datasets.RegistryEntry(
        name="x/y.csv.gz", size=1, sha256=datasets.sha256_of(root / "y.csv.gz"), url=url
    )
    path = datasets._download(good)
    assert path.read_bytes() == b"not the right bytes" and path.parent == cache


class _CutShort(http.server.BaseHTTPRequestHandler):
    """Promises 100,000 bytes, sends 10 and hangs up (a download cut short)."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self.wfile.write(b"0123456789")
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


def _unreachable_registry(monkeypatch: pytest.MonkeyPatch, url: str) -> datasets.RegistryEntry:
    """The registry with MATH's entry pointing at ``url`` (no network is ever used)."""
    real = datasets.registry()
    entry = datasets.RegistryEntry(
        name=MATH, size=real[MATH].size, sha256=real[MATH].sha256, url=url
    )
    monkeypatch.setattr(datasets, "registry", lambda: {**real, MATH: entry})
    return entry


@pytest.mark.parametrize("cut_short", [False, True], ids=["unreachable", "cut-short"])
def test_no_folder_and_no_network_is_one_clear_oserror(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cut_short: bool
) -> None:
    pytest.importorskip("pooch")
    if cut_short:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CutShort)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/math.csv.gz"
    else:
        url = "http://127.0.0.1:9/math.csv.gz"  # the discard port: connection refused
    _unreachable_registry(monkeypatch, url)
    monkeypatch.delenv(datasets.DATA_DIR_ENV, raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv(datasets.CACHE_DIR_ENV, str(cache))
    try:
        for call in (lambda: datasets.data_path(MATH), lambda: load_verifier_scores("math")):
            with pytest.raises(OSError) as info:
                call()
            message = str(info.value)
            assert MATH in message and "CTD_STATS_DATA_DIR" in message, message
            # One error: no requests / urllib3 chain shown above it.
            assert info.value.__cause__ is None and info.value.__suppress_context__
            assert "requests" not in type(info.value).__module__
        # Nothing half-written stays in the cache (pooch downloads to a temporary file).
        assert not [q for q in cache.rglob("*") if q.is_file()]
    finally:
        if cut_short:
            server.shutdown()
            server.server_close()


def _readme_lookup_order() -> list[str]:
    """The numbered list in the README's "Data" section: what each step names."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Data\n", 1)[1].split("\n## ", 1)[0]
    steps = re.findall(r"^\d\. (.*(?:\n   .*)*)", section, re.M)
    return [" ".join(step.split()) for step in steps]


def test_the_readme_says_how_the_data_folder_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    """The README's order (data_dir=, CTD_STATS_DATA_DIR, the cache) is what data_path does."""
    steps = _readme_lookup_order()
    assert len(steps) == 3, steps
    assert "`data_dir=`" in steps[0]
    assert "`CTD_STATS_DATA_DIR`" in steps[1]
    assert "`CTD_STATS_CACHE_DIR`" in steps[2] and "download" in steps[2]
    # 1. data_dir= wins over the environment variable.
    other = tmp_path / "other"
    (other / "verifier_scores").mkdir(parents=True)
    shutil.copy(data_dir / MATH, other / MATH)
    monkeypatch.setenv(datasets.DATA_DIR_ENV, str(data_dir))
    assert datasets.data_path(MATH, data_dir=other) == other / MATH
    # 2. then the environment variable (and a file missing there is an error, not a download).
    assert datasets.data_path(MATH) == data_dir / MATH
    monkeypatch.setenv(datasets.DATA_DIR_ENV, str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match=r"^CTD_STATS_DATA_DIR: data file"):
        datasets.data_path(MATH)
    # 3. then the cache: a verified copy already there is used without any network.
    pytest.importorskip("pooch")
    monkeypatch.delenv(datasets.DATA_DIR_ENV)
    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.copy(data_dir / MATH, cache / MATH.replace("/", "__"))
    monkeypatch.setenv(datasets.CACHE_DIR_ENV, str(cache))
    _unreachable_registry(monkeypatch, "http://127.0.0.1:9/never-fetched")
    assert datasets.data_path(MATH) == cache / MATH.replace("/", "__")
    # An empty CTD_STATS_DATA_DIR counts as unset, as the README says ("when set and not empty").
    monkeypatch.setenv(datasets.DATA_DIR_ENV, "")
    assert datasets.data_path(MATH) == cache / MATH.replace("/", "__")
