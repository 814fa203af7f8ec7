"""Shared look of the book: one colour per method, page-width figures, result tables.

``setup()`` sets the figure style; ``panels(n)`` lays out ``n`` panels on a 2-column grid of page
width; ``legend_below(fig)`` puts one legend under the panels; ``md_table(header, rows)`` turns a
result table into Markdown, rendered as an HTML table (``nb_render_markdown_format: myst``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown
from matplotlib.figure import Figure

COLORS = {
    # calibration / testing
    "binomial": "#1f77b4",
    "hoeffding": "#ff7f0e",
    "hoeffding_kl": "#8c564b",
    "bentkus": "#e377c2",
    "hb": "#2ca02c",
    "wsr": "#9467bd",
    "plug-in": "#bcbd22",
    # CTD cascade methods
    "CTD": "#d62728",
    "Budget-only LTT": "#ff9896",
    "Unc. calibrated": "#ff7f0e",
    "DV top-k": "#1f77b4",
    "Unc. top-k": "#ffbb78",
    "Oracle top-k": "#2ca02c",
    "Global oracle": "#98df8a",
    "Probe only": "#7f7f7f",
    "Expert only": "#000000",
    # online monitors
    "CRC": "#1f77b4",
    "UCB": "#ff7f0e",
    "Anytime (Ville)": "#2ca02c",
    "PAC": "#9467bd",
}


# The content column is about 790 px wide at a 1280 px window (book/_static/bookstyle.css); at
# figure.dpi 100 a figure PAGE_WIDTH inches wide is shown at about 1:1, so an 11 pt label reads
# as about 11 pt (never below 9 pt, which book/check_pages.py's figure rule assumes).
PAGE_WIDTH = 8.0


def setup() -> None:
    mpl.rcParams.update(
        {
            "figure.figsize": (PAGE_WIDTH * 0.9, 4.2),
            "figure.dpi": 100,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "legend.frameon": False,
            "font.size": 11,
            "axes.titlesize": 11,
            "axes.labelsize": 11,
            "xtick.labelsize": 10,
            "ytick.labelsize": 10,
            "legend.fontsize": 10,
            "figure.titlesize": 12,
        }
    )


def panels(
    n: int,
    *,
    height: float = 3.1,
    sharex: bool = False,
    sharey: bool = False,
) -> tuple[Figure, np.ndarray[Any, np.dtype[Any]]]:
    """``n`` panels on a 2-column grid of page width (2×2 for four); unused cells are hidden.

    Returns the figure and a flat array of the first ``n`` axes, in reading order.
    """
    rows = max(1, math.ceil(n / 2))
    cols = 1 if n == 1 else 2
    fig, grid = plt.subplots(
        rows,
        cols,
        figsize=(PAGE_WIDTH, height * rows),
        sharex=sharex,
        sharey=sharey,
        squeeze=False,
    )
    flat = grid.ravel()
    for ax in flat[n:]:
        ax.set_axis_off()
    return fig, flat[:n]


def legend_below(fig: Figure, axes: Any = None, ncol: int = 3) -> None:
    """One legend for the whole figure, below the panels (outside every data area).

    Collects the labelled artists of ``axes`` (default: every axes of the figure), without
    repeats. Call it after ``fig.tight_layout()``; the inline backend's tight bounding box keeps
    the legend in the image.
    """
    pool = fig.axes if axes is None else np.atleast_1d(axes).ravel()
    seen: dict[str, Any] = {}
    for ax in pool:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if not label.startswith("_") and label not in seen:
                seen[label] = handle
    fig.legend(
        list(seen.values()),
        list(seen),
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=ncol,
        frameon=False,
    )


def md_table(
    header: Sequence[str], rows: Iterable[Sequence[object]], align: str | None = None
) -> Markdown:
    """A result table as a Markdown pipe table, which the book renders as an HTML table.

    ``align`` has one letter per column (``l``, ``r``, ``c``); by default the first column is
    left-aligned and the others right-aligned.
    """
    cells = [[str(h) for h in header]] + [[str(c) for c in row] for row in rows]
    align = align or "l" + "r" * (len(header) - 1)
    rule = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
    lines.insert(1, "| " + " | ".join(rule[a] for a in align) + " |")
    return Markdown("\n".join(lines))
