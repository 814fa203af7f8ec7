"""Open every page of the built book in headless Chromium and fail on what a reader would see.

    python book/check_pages.py [HTML_DIR] [--width 1280] [--screenshots DIR] [--notebooks DIR]

HTML_DIR defaults to book/_build/html (``nox -s bookcheck`` builds it without executing the
chapters, then runs this script). Each page is loaded from file:// in headless Chromium from the
system packages (Debian: ``apt-get install chromium chromium-driver``), driven by selenium through
chromedriver; no browser is downloaded. Every request that leaves file:// is refused by a dead
proxy, so a page that still needs a CDN shows it. After MathJax has finished typesetting (or the
timeout), a page fails if it has:

* raw TeX in its visible text (``\\(``, ``\\[``, ``$$``, ``\\begin{``, ``\\varepsilon`` ...) outside
  code cells and inline code;
* a paragraph that is a raw pipe table (``| a | b |`` followed by ``|---|``);
* a script, stylesheet, font or image requested over the network;
* a broken image;
* a text block (code, output, table, figure, display math) wider than the content column, or
  scrolled/cut inside it;
* one cell's printed output split over several output boxes;
* ``NBVAL_`` anywhere in its text (nbval markers belong in cell tags; folded cells count);
* a cross-reference that did not resolve (a ``{py:class}`` role rendered as ``code.xref``
  without a link), except on the API pages, which show external types that way;
* on an API page (``api/*.html``): no documented object at all.

A whole book must also have the API pages and the changelog (``REQUIRED_PAGES``).

With ``--notebooks DIR`` the executed notebooks are checked too: no plain-text output line longer
than 100 characters. Exit status 0 when every page passes, 1 otherwise. When Chromium or
chromedriver is missing the check is skipped with a message (exit 0), except with ``CI=true`` in
the environment, where a missing browser is a failure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BOOK = Path(__file__).parent
MAX_TEXT_COLUMNS = 100
API_DIR = "api"
# Pages a built book must have (checked when HTML_DIR is a whole book, i.e. holds intro.html).
REQUIRED_PAGES = (
    "api/core.html",
    "api/cascade.html",
    "api/online.html",
    "api/probes.html",
    "changelog.html",
)

# Runs in the page. Waits for MathJax, then reports every defect as {kind, detail}.
_PAGE_JS = r"""
const done = arguments[arguments.length - 1];
const mathTimeoutMs = arguments[0];
const checkXrefs = arguments[1];
(async () => {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const t0 = Date.now();
  const hasMathScript = [...document.scripts].some((s) => /mathjax/i.test(s.src || ''));
  if (hasMathScript) {
    while (Date.now() - t0 < mathTimeoutMs) {
      if (window.MathJax && window.MathJax.startup && window.MathJax.startup.promise) break;
      await sleep(50);
    }
    if (window.MathJax && window.MathJax.startup && window.MathJax.startup.promise) {
      await Promise.race([window.MathJax.startup.promise, sleep(mathTimeoutMs)]);
    }
  }
  const imgs = [...document.images];
  for (const img of imgs) img.loading = 'eager';
  await Promise.race([
    Promise.all(imgs.map((img) => img.decode().catch(() => null))), sleep(5000)]);
  await sleep(100);

  const out = [];
  const add = (kind, detail) => out.push({kind, detail: String(detail).slice(0, 300)});
  const visible = (el) => el && el.getClientRects().length > 0 &&
    getComputedStyle(el).visibility !== 'hidden';
  const where = (el) => {
    const sec = el.closest('section[id]');
    return sec ? '#' + sec.id : '';
  };
  const article = document.querySelector('article.bd-article') ||
    document.querySelector('[role=main]') || document.querySelector('main') || document.body;

  // 1. raw TeX in visible text
  // .sig: an API entry's signature is code (a constant's value may hold a '\\n').
  const skipTex = 'script,style,noscript,textarea,code,kbd,.cell_input,.highlight,.sig,' +
    'mjx-container,mjx-assistive-mml,.MathJax,.MathJax_Preview,.sd-tab-set';
  const texRe = /\\\(|\\\)|\\\[|\\\]|\$\$|\\(?:begin|end)\{|\\[A-Za-z]{2,}/;
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const texSeen = new Set();
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!el || el.closest(skipTex) || !visible(el)) continue;
    const m = n.textContent.match(texRe);
    if (!m) continue;
    const i = n.textContent.indexOf(m[0]);
    const snip = n.textContent.slice(Math.max(0, i - 30), i + 40).replace(/\s+/g, ' ');
    if (texSeen.has(snip)) continue;
    texSeen.add(snip);
    add('raw-tex', where(el) + ' …' + snip + '…');
  }

  // 2. paragraphs that are raw pipe tables
  for (const p of article.querySelectorAll('p')) {
    const t = p.textContent;
    if (/^\s*\|.*\|/s.test(t) && /\|\s*:?[-\u2010-\u2015]+:?\s*\|/.test(t) && visible(p)) {
      add('raw-pipe-table', where(p) + ' ' + t.replace(/\s+/g, ' ').slice(0, 120));
    }
  }

  // 3. network resources named in the DOM (requests are checked from the browser log too)
  const local = /^(file|data|blob|about|javascript):/i;
  const res = document.querySelectorAll(
    'script[src],link[href],img[src],iframe[src],source[src],video[src],audio[src],embed[src]');
  for (const el of res) {
    if (el.tagName === 'LINK') {
      const rel = (el.getAttribute('rel') || '').toLowerCase();
      if (!/stylesheet|preload|modulepreload|icon|prefetch|manifest/.test(rel)) continue;
    }
    const url = el.src || el.href || '';
    if (url && !local.test(url)) add('network', el.tagName.toLowerCase() + ' ' + url);
  }
  for (const e of performance.getEntriesByType('resource')) {
    if (!local.test(e.name)) add('network', 'fetched ' + e.name);
  }

  // 4. broken images
  for (const img of imgs) {
    if (!img.complete || img.naturalWidth === 0) {
      add('broken-image', where(img) + ' ' + (img.getAttribute('src') || '(no src)'));
    }
  }

  // 5. blocks wider than the content column, or scrolled / cut inside it
  const col = article.getBoundingClientRect();
  const blocks = article.querySelectorAll(
    'pre, table, img, svg, mjx-container[display="true"], div.math, .cell_output > .output');
  for (const el of blocks) {
    if (!visible(el) || el.closest('.sd-tab-set')) continue;
    const r = el.getBoundingClientRect();
    const name = el.tagName.toLowerCase();
    let text = (el.innerText || el.getAttribute('src') || '').split('\n');
    const longest = text.reduce((a, b) => (b.length > a.length ? b : a), '');
    if (r.right > col.right + 2 || r.left < col.left - 2) {
      add('too-wide', `${where(el)} ${name} is ${Math.round(r.width)} px, the column ` +
        `${Math.round(col.width)} px: ${longest.slice(0, 100)}`);
    } else if (el.scrollWidth > el.clientWidth + 2 && name !== 'img' && name !== 'svg') {
      add('too-wide', `${where(el)} ${name} content is ${el.scrollWidth} px in a ` +
        `${el.clientWidth} px box (${longest.length} chars): ${longest.slice(0, 100)}`);
    }
  }

  // 6. one cell's stream output split over several boxes
  for (const cell of article.querySelectorAll('.cell_output')) {
    const kids = [...cell.children];
    for (let i = 1; i < kids.length; i++) {
      const a = kids[i - 1].className, b = kids[i].className;
      if (/\bstream\b/.test(a) && a === b) {
        add('split-output', where(cell) + ' ' + kids.length + ' output boxes in one cell');
        break;
      }
    }
  }
  // 7. nbval markers in the rendered text (hidden or folded cells included: one click shows them)
  const skipNbval = 'script,style,noscript';
  const nbWalker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = nbWalker.nextNode(); n; n = nbWalker.nextNode()) {
    const el = n.parentElement;
    if (!el || el.closest(skipNbval)) continue;
    const i = n.textContent.indexOf('NBVAL_');
    if (i >= 0) {
      add('nbval-marker', where(el) + ' …' + n.textContent.slice(Math.max(0, i - 20), i + 40)
        .replace(/\s+/g, ' ') + '…');
    }
  }

  // 8. cross-references that did not resolve: Sphinx renders a role it cannot resolve as
  // <code class="xref ..."> with no enclosing <a class="reference internal"> (nitpicky mode
  // makes it a build warning; this catches a build run without it). The API pages themselves
  // show external types (int, numpy's ndarray) that way on purpose, so they are exempt.
  if (checkXrefs) {
    for (const el of article.querySelectorAll('.xref')) {
      const a = el.closest('a');
      if (!a || !a.getAttribute('href')) {
        add('unresolved-xref', where(el) + ' ' + el.textContent.trim().slice(0, 120));
      }
    }
  }
  const apiEntries = article.querySelectorAll('dl.py').length;

  return {defects: out, width: window.innerWidth, column: Math.round(col.width),
          mathjax: !!(window.MathJax && window.MathJax.startup), api_entries: apiEntries};
})().then(done, (e) => done({error: String(e), defects: []}));
"""


@dataclass
class PageReport:
    page: str
    defects: list[tuple[str, str]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def find_browser() -> tuple[str, str] | None:
    """Chromium and chromedriver from the system, or None."""
    chrome = os.environ.get("CHROMIUM") or next(
        (p for n in ("chromium", "chromium-browser", "google-chrome") if (p := shutil.which(n))),
        None,
    )
    driver = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
    if chrome and driver:
        return chrome, driver
    return None


def make_driver(chrome: str, chromedriver: str, width: int, user_data_dir: str) -> Any:
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium-manager never downloads a driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--window-size={width},1000",
        f"--user-data-dir={user_data_dir}",
        # Anything that leaves file:// goes to a dead proxy: offline by construction.
        "--proxy-server=http://127.0.0.1:9",
        "--proxy-bypass-list=<-loopback>",
        "--allow-file-access-from-files",
    ):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=chromedriver))
    driver.set_script_timeout(60)
    driver.set_page_load_timeout(60)
    # The viewport (not the window) is what a reader at `width` px sees.
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": 1000, "deviceScaleFactor": 1, "mobile": False},
    )
    return driver


def network_requests(driver: Any) -> list[str]:
    """URLs outside file:// requested since the last call (from the performance log)."""
    urls: list[str] = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            url = msg["params"]["request"]["url"]
            if not url.startswith(("file:", "data:", "blob:", "about:")) and url not in urls:
                urls.append(url)
    return urls


def screenshot(driver: Any, path: Path, width: int) -> None:
    import base64

    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    height = min(height, 30000)
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
    time.sleep(0.3)
    png = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})["data"]
    path.write_bytes(base64.b64decode(png))
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": 1000, "deviceScaleFactor": 1, "mobile": False},
    )


def check_pages(
    pages: list[Path],
    root: Path,
    width: int = 1280,
    screenshots: Path | None = None,
    math_timeout_s: float = 20.0,
) -> list[PageReport]:
    """Load each page and return its defects (raises RuntimeError if no browser is found)."""
    import tempfile

    found = find_browser()
    if found is None:
        raise RuntimeError("Chromium/chromedriver not found")
    reports: list[PageReport] = []
    with tempfile.TemporaryDirectory(prefix="bookcheck-") as profile:
        driver = make_driver(*found, width=width, user_data_dir=profile)
        try:
            network_requests(driver)
            for page in pages:
                rel = page.relative_to(root).as_posix() if page.is_relative_to(root) else str(page)
                report = PageReport(rel)
                driver.get(page.resolve().as_uri())
                api_page = rel.startswith(API_DIR + "/")
                result = driver.execute_async_script(
                    _PAGE_JS, int(math_timeout_s * 1000), not api_page
                )
                if result.get("error"):
                    report.defects.append(("script-error", result["error"]))
                for d in result["defects"]:
                    report.defects.append((d["kind"], d["detail"]))
                seen = {d for k, d in report.defects if k == "network"}
                for url in network_requests(driver):
                    if not any(url in s for s in seen):
                        report.defects.append(("network", "requested " + url))
                report.info = {k: result.get(k) for k in ("width", "column", "mathjax")}
                if api_page and not result.get("api_entries"):
                    report.defects.append(
                        ("empty-api-page", "no documented object (did autodoc import the module?)")
                    )
                if screenshots is not None:
                    screenshots.mkdir(parents=True, exist_ok=True)
                    name = rel.replace("/", "__").removesuffix(".html") + ".png"
                    screenshot(driver, screenshots / name, width)
                reports.append(report)
        finally:
            driver.quit()
    return reports


def check_notebooks(folder: Path, max_columns: int = MAX_TEXT_COLUMNS) -> list[PageReport]:
    """Plain-text outputs of the executed notebooks: no line longer than ``max_columns``."""
    reports = []
    for nb_path in sorted(folder.glob("*.ipynb")):
        report = PageReport(nb_path.name)
        nb = json.loads(nb_path.read_text())
        for i, cell in enumerate(nb.get("cells", [])):
            for output in cell.get("outputs", []):
                if output.get("output_type") == "stream":
                    text = output.get("text", "")
                elif "text/plain" in output.get("data", {}) and not any(
                    k in output["data"] for k in ("text/html", "image/png", "text/markdown")
                ):
                    text = output["data"]["text/plain"]
                else:
                    continue
                text = "".join(text) if isinstance(text, list) else text
                for line in text.splitlines():
                    if len(line) > max_columns:
                        report.defects.append(
                            ("long-line", f"cell {i}: {len(line)} chars: {line[:80]}…")
                        )
        reports.append(report)
    return reports


def check_required_pages(html: Path) -> list[PageReport]:
    """A whole book (a folder with intro.html) must have the API reference and the changelog."""
    if not (html.is_dir() and (html / "intro.html").is_file()):
        return []
    missing = [page for page in REQUIRED_PAGES if not (html / page).is_file()]
    return [PageReport("(book)", [("missing-page", page) for page in missing])] if missing else []


def pages_of(html_dir: Path) -> list[Path]:
    skip = {"genindex.html", "search.html"}
    return sorted(
        p for p in html_dir.rglob("*.html") if "_static" not in p.parts and p.name not in skip
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("html", nargs="?", type=Path, default=BOOK / "_build" / "html")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--screenshots", type=Path, default=None)
    parser.add_argument("--notebooks", type=Path, default=None)
    parser.add_argument("--math-timeout", type=float, default=20.0)
    args = parser.parse_args(argv)

    ci = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
    reports: list[PageReport] = []
    if args.notebooks is not None:
        reports += check_notebooks(args.notebooks)
    html: Path = args.html
    pages = [html] if html.is_file() else pages_of(html)
    if not pages:
        print(f"check_pages: no HTML pages under {html} (build the book first)", file=sys.stderr)
        return 1
    reports += check_required_pages(html)
    if find_browser() is None:
        msg = (
            "check_pages: Chromium or chromedriver not found "
            "(Debian: apt-get install chromium chromium-driver)"
        )
        if ci:
            print(msg + "; CI is set, so this is a failure", file=sys.stderr)
            return 1
        print(msg + "; SKIPPED the browser check", file=sys.stderr)
        return _summary(reports)
    start = time.perf_counter()
    reports += check_pages(
        pages,
        html if html.is_dir() else html.parent,
        args.width,
        args.screenshots,
        args.math_timeout,
    )
    print(
        f"check_pages: {len(pages)} pages at {args.width} px in {time.perf_counter() - start:.1f} s"
    )
    return _summary(reports)


def _summary(reports: list[PageReport]) -> int:
    bad = 0
    for r in reports:
        extra = ""
        if r.info:
            extra = f" (column {r.info.get('column')} px)"
        if r.defects:
            print(f"FAIL {r.page}{extra}: {len(r.defects)} defect(s)")
            for kind, detail in r.defects:
                print(f"    [{kind}] {detail}")
            bad += 1
        else:
            print(f"ok   {r.page}{extra}")
    print(f"check_pages: {bad} of {len(reports)} checked files have defects")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
