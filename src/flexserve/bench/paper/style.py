"""Plot style shared by the figures: matplotlib in Agg mode, paper-like (serif, light grid)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flexserve.timing.gantt import PlotUnavailableError

#: One colour per system, the same in every figure.
SYSTEM_COLOURS = {"nw-base": "#9e9e9e", "strawman": "#c44e52", "strawman-opt": "#dd8452",
                  "flexserve": "#4c72b0"}
PAPER_COLOUR = "#bbbbbb"
OURS_COLOUR = "#4c72b0"

_RC = {"font.family": "serif", "font.size": 9, "axes.grid": True, "grid.alpha": 0.3,
       "axes.spines.top": False, "axes.spines.right": False, "legend.frameon": False,
       "savefig.dpi": 130}


def pyplot() -> Any:
    """matplotlib.pyplot with the Agg backend and the paper style applied."""
    try:
        import matplotlib
    except ImportError:
        raise PlotUnavailableError("the paper figures need matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(_RC)
    return plt


def save(fig: Any, path: Path) -> None:
    """Write ``fig`` as PNG without timestamps in its metadata, and close it."""
    plt = pyplot()
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)


def log_y(ax: Any) -> None:
    """A log y axis labelled with plain numbers (1, 10, 100), no minor labels."""
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(NullFormatter())
