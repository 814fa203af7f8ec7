"""Turn nbval comment markers into cell tags, so no reader of the book sees ``NBVAL_``.

    python book/tools/nbval_tags.py book/chapters/13_per_group_budgets.ipynb   # rewrite in place
    python book/tools/nbval_tags.py --check book/chapters/*.ipynb              # fail if any left
    python book/tools/nbval_tags.py --hide-input c02-08 c02-14 -- book/chapters/02_cascade.ipynb

nbval reads both forms (``nbval/plugin.py``: ``find_comment_markers`` for a comment line
``# NBVAL_CHECK_OUTPUT``, ``find_metadata_tags`` for the cell tag ``nbval-check-output``; the tag
is the marker in lower case with ``-`` for ``_``). A marker line is removed from the cell's
source and the tag is added to ``metadata.tags``; nothing is executed and outputs are kept.
``--hide-input`` also tags the cells with these ids ``hide-input`` (Jupyter Book shows a
"show code" toggle instead of the source).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

# The markers nbval knows (nbval/plugin.py, ``comment_markers``).
MARKER = re.compile(
    r"^\s*#+\s*(NBVAL_CHECK_OUTPUT|NBVAL_IGNORE_OUTPUT|NBVAL_RAISES_EXCEPTION|NBVAL_SKIP"
    r"|PYTEST_VALIDATE_IGNORE_OUTPUT)\s*$"
)


def tag_of(marker: str) -> str:
    if marker == "PYTEST_VALIDATE_IGNORE_OUTPUT":
        return "nbval-ignore-output"
    return marker.lower().replace("_", "-")


def add_tag(cell: nbformat.NotebookNode, tag: str) -> bool:
    tags = cell.metadata.setdefault("tags", [])
    if tag in tags:
        return False
    tags.append(tag)
    return True


def convert(nb: nbformat.NotebookNode) -> int:
    """Move every marker comment of ``nb`` into its cell's tags; the number of markers moved."""
    moved = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept: list[str] = []
        found = False
        for line in cell.source.splitlines(keepends=True):
            match = MARKER.match(line)
            if match:
                add_tag(cell, tag_of(match.group(1)))
                moved += 1
                found = True
            else:
                kept.append(line)
        if found:
            cell.source = "".join(kept).lstrip("\n")
    return moved


def remaining(nb: nbformat.NotebookNode) -> int:
    return sum(
        1
        for cell in nb.cells
        if cell.cell_type == "code"
        for line in cell.source.splitlines()
        if MARKER.match(line)
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--check", action="store_true", help="only report; exit 1 if any left")
    parser.add_argument("--hide-input", nargs="*", default=[], metavar="CELL_ID")
    args = parser.parse_args(argv)
    left = 0
    for path in args.notebooks:
        nb = nbformat.read(path, as_version=4)
        if args.check:
            n = remaining(nb)
            left += n
            if n:
                print(f"{path}: {n} nbval comment marker(s)")
            continue
        moved = convert(nb)
        ids = set(args.hide_input)
        hidden = sum(add_tag(c, "hide-input") for c in nb.cells if c.get("id") in ids)
        if moved or hidden:
            nbformat.write(nb, path)
        print(f"{path}: {moved} marker(s) to tags, {hidden} cell(s) tagged hide-input")
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
