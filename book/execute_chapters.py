"""Execute the book's chapters in place, so they are committed with their outputs.

    python book/execute_chapters.py                 # every chapter
    python book/execute_chapters.py 01_guarantees   # chapters whose name contains a pattern

nbval comment markers (``# NBVAL_CHECK_OUTPUT``) are first moved into cell tags
(``book/tools/nbval_tags.py``), so no reader of the book sees them. Each notebook runs in its own
folder with the current Python (the same environment nbval uses in CI), and the wall time of each
chapter is printed. The kernel runs with log level ERROR, so its "running over TCP without
encryption" warning (a local kernel on localhost) is not printed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

CHAPTERS = Path(__file__).parent / "chapters"
sys.path.insert(0, str(Path(__file__).parent / "tools"))
from nbval_tags import convert  # noqa: E402


def main(patterns: list[str]) -> None:
    notebooks = sorted(CHAPTERS.glob("*.ipynb"))
    if patterns:
        notebooks = [nb for nb in notebooks if any(p in nb.stem for p in patterns)]
    for path in notebooks:
        start = time.perf_counter()
        nb = nbformat.read(path, as_version=4)
        if moved := convert(nb):
            print(f"{path.name}: {moved} nbval marker(s) moved into cell tags")
        nb.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3",
            "language": "python",
        }
        client = NotebookClient(
            nb,
            timeout=900,
            kernel_name="python3",
            resources={"metadata": {"path": str(CHAPTERS)}},
            extra_arguments=["--IPKernelApp.log_level=ERROR"],
        )
        client.execute()
        nbformat.write(nb, path)
        print(f"{path.name}: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
