"""book/check_pages.py must fail on a page broken on purpose (and pass a clean one).

The browser tests need Chromium, chromedriver and selenium; ``nox -s bookcheck`` installs
selenium and runs this file (there, with CI set, a missing browser is a failure, not a skip).
Elsewhere (e.g. ``nox -s tests``, which has no selenium) they are skipped.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "book"))
import check_pages

BROKEN = (
    r"""<!DOCTYPE html>
<html><head><meta charset="utf-8">
<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>
<link rel="stylesheet" href="https://fonts.googleapis.com/css?family=Roboto">
</head><body>
<article class="bd-article" style="width: 600px">
<section id="raw-tex"><p>With probability at least \(1-\delta\), the rate stays below
\(\varepsilon\).</p></section>
<section id="raw-table"><p>| method | paper | here |
|—|—|—|
| CTD | 3.0 % | 1.4 % |</p></section>
<section id="broken-image"><img src="no_such_figure.png" alt="figure"></section>
<section id="nbval"><div class="cell_input"><pre># NBVAL_CHECK_OUTPUT
print(1)</pre></div></section>
<section id="unresolved"><p>Calibrate with <code class="xref py py-class docutils literal
notranslate"><span class="pre">ctd_stats.NoSuchClass</span></code>.</p></section>
<section id="too-wide"><div class="cell_output"><div class="output stream"><pre>
"""
    + ("x" * 300)
    + r"""
</pre></div><div class="output stream"><pre>a second box of the same cell</pre></div></div>
</section>
</article></body></html>
"""
)

CLEAN = """<!DOCTYPE html>
<html><head><meta charset="utf-8"></head><body>
<article class="bd-article" style="width: 800px">
<section id="ok"><p>Plain prose, a Unicode ε and δ, and a real table:</p>
<table><tr><th>method</th><th>here</th></tr><tr><td>CTD</td><td>1.4 %</td></tr></table>
<div class="cell_output"><div class="output stream"><pre>short line</pre></div></div>
<p>Deploy with <a class="reference internal" href="#ok"><code class="xref py py-class docutils
literal notranslate"><span class="pre">ctd_stats.Delegator</span></code></a>.</p>
<img alt="inline"
 src="data:image/gif;base64,R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==">
</section></article></body></html>
"""


def _require_browser() -> None:
    missing = []
    if importlib.util.find_spec("selenium") is None:
        missing.append("selenium")
    if check_pages.find_browser() is None:
        missing.append("chromium/chromedriver")
    if missing:
        msg = "browser check needs " + ", ".join(missing)
        if os.environ.get("BOOKCHECK_REQUIRE_BROWSER") == "1":
            pytest.fail(msg + " (BOOKCHECK_REQUIRE_BROWSER=1: no skipping)")
        pytest.skip(msg)


def test_long_output_lines_in_notebooks_fail(tmp_path: Path) -> None:
    cell = {
        "cell_type": "code",
        "metadata": {},
        "source": "print()",
        "outputs": [{"output_type": "stream", "name": "stdout", "text": "y" * 101 + "\nok\n"}],
    }
    nb = {"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "ch.ipynb").write_text(json.dumps(nb))
    (report,) = check_pages.check_notebooks(tmp_path)
    assert [kind for kind, _ in report.defects] == ["long-line"]


def test_broken_page_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _require_browser()
    page = tmp_path / "broken.html"
    page.write_text(BROKEN)
    (report,) = check_pages.check_pages([page], tmp_path, math_timeout_s=2)
    kinds = {kind for kind, _ in report.defects}
    for expected in (
        "raw-tex",
        "raw-pipe-table",
        "network",
        "broken-image",
        "too-wide",
        "split-output",
        "nbval-marker",
        "unresolved-xref",
    ):
        assert expected in kinds, (expected, report.defects)
    assert check_pages.main([str(page), "--math-timeout", "2"]) == 1
    out = capsys.readouterr().out
    assert "FAIL broken.html" in out


def test_clean_page_passes(tmp_path: Path) -> None:
    _require_browser()
    page = tmp_path / "clean.html"
    page.write_text(CLEAN)
    (report,) = check_pages.check_pages([page], tmp_path, math_timeout_s=2)
    assert report.defects == []


API_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"></head><body>
<article class="bd-article" style="width: 800px"><section id="api">
<h1>API</h1>{entries}
</section></article></body></html>
"""
# One entry as Sphinx writes it: an external type in the signature is a code.xref without a link.
ENTRY = """<dl class="py function"><dt class="sig sig-object py" id="f">
<span class="sig-name descname">f</span>(<em class="sig-param">x: <code class="xref py py-class
docutils literal notranslate"><span class="pre">int</span></code></em>)</dt>
<dd><p>Docstring.</p></dd></dl>"""


def test_api_pages_need_entries_and_may_show_external_types(tmp_path: Path) -> None:
    _require_browser()
    (tmp_path / "api").mkdir()
    empty = tmp_path / "api" / "empty.html"
    empty.write_text(API_PAGE.format(entries="<p>autodoc imported nothing</p>"))
    full = tmp_path / "api" / "full.html"
    full.write_text(API_PAGE.format(entries=ENTRY))
    bad, good = check_pages.check_pages([empty, full], tmp_path, math_timeout_s=2)
    assert [kind for kind, _ in bad.defects] == ["empty-api-page"]
    assert good.defects == []


def test_a_book_without_its_reference_pages_fails(tmp_path: Path) -> None:
    (tmp_path / "intro.html").write_text("<html></html>")
    (report,) = check_pages.check_required_pages(tmp_path)
    assert {detail for _, detail in report.defects} == set(check_pages.REQUIRED_PAGES)
    for page in check_pages.REQUIRED_PAGES:
        (tmp_path / page).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / page).write_text("<html></html>")
    assert check_pages.check_required_pages(tmp_path) == []


def test_the_api_reference_covers_every_public_module() -> None:
    """Each public module with an ``__all__`` has a section, and each public name an entry."""
    pytest.importorskip("sphinx")
    pytest.importorskip("torch")  # the probes modules import it
    import importlib
    import pkgutil

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "book" / "api"))
    api_ext = importlib.import_module("api_ext")

    documented = {m for part in api_ext.API_MODULES.values() for m in part}
    registry = api_ext.registry()
    for package in api_ext.PACKAGES:
        for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
            name = f"{package}.{info.name}"
            if info.ispkg or info.name.startswith("_") or name == "probes.__main__":
                continue
            names = getattr(importlib.import_module(name), "__all__", None)
            if names:
                assert name in documented, f"{name}: add it to API_MODULES in book/api/api_ext.py"
                for public in names:
                    assert f"{name}.{public}" in registry.aliases, (name, public)
        # every name a package exports leads to one entry
        for public in getattr(importlib.import_module(package), "__all__", []):
            assert f"{package}.{public}" in registry.aliases, (package, public)
