"""Optional Gantt chart (PNG) of an event log, one row per lane, coloured by category.

Needs matplotlib, which is not a FlexServe dependency; without it
:func:`save_gantt_png` raises :class:`PlotUnavailableError` and the Chrome trace
(:func:`flexserve.timing.trace.write_chrome_trace`, open it in https://ui.perfetto.dev) is the
way to look at a timeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flexserve.errors import FlexServeError
from flexserve.timing.sim import Event
from flexserve.timing.trace import CATEGORIES, category_of, lane_of, lanes

_COLOURS = {"compute": "#4c72b0", "decrypt": "#dd8452", "io": "#55a868", "alloc": "#c44e52",
            "init": "#8172b3", "other": "#937860"}


class PlotUnavailableError(FlexServeError):
    """matplotlib is not installed."""


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise PlotUnavailableError(
            "a Gantt PNG needs matplotlib (pip install matplotlib); the Chrome trace JSON "
            "(timing.trace.write_chrome_trace) works without it") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_gantt_png(log: Sequence[Event], path: str | Path, *, title: str = "") -> Path:
    """Draw ``log`` as horizontal bars (seconds on x, lanes on y) into ``path``."""
    plt = _pyplot()
    names = lanes(log)
    fig, ax = plt.subplots(figsize=(12, 0.45 * len(names) + 1.5))
    for e in log:
        row = names.index(lane_of(e, names))
        colour = _COLOURS.get(category_of(e), _COLOURS["other"])
        ax.barh(row, e.duration_s, left=e.start_s, height=0.8, color=colour, edgecolor="black",
                linewidth=0.3)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel("device time (s)")
    if title:
        ax.set_title(title)
    handles = [plt.Rectangle((0, 0), 1, 1, color=_COLOURS[c]) for c in CATEGORIES]
    ax.legend(handles, CATEGORIES, loc="upper right", fontsize="small")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
