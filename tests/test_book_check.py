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
