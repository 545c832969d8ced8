"""The ``--profile`` sweep: FlexServe's average cold-start TTFT speedups per device profile.

Each profile runs the Figure 5 grid (:mod:`flexserve.bench.paper.fig5_6`); the speedups are
the arithmetic and geometric means over the grid of Strawman's (or Strawman-OPT's) TTFT over
FlexServe's. The paper measured the RK3588 board only, so only that profile's rows are set
beside its averages.
"""

from __future__ import annotations

from pathlib import Path

from flexserve.bench import published, ttft
from flexserve.bench.paper import fig5_6, style
from flexserve.bench.paper.figure import Comparison, Figure, fmt
from flexserve.systems.config import SYSTEMS
from flexserve.timing.profile import DeviceProfile, load_profile

NAME = "sweep"
#: The bundled boards swept: the paper's board and a current flagship phone.
SWEEP_PROFILES = ("rk3588", "sd8gen3")
PAPER_PROFILE = "rk3588"
BASELINES = ("strawman", "strawman-opt")
COLUMNS = ("profile", "over", "points", "mean_speedup", "geomean_speedup")
TARGETS = {"strawman": published.TTFT_SPEEDUP_VS_STRAWMAN,
           "strawman-opt": published.TTFT_SPEEDUP_VS_STRAWMAN_OPT}


def profile_names(profile: DeviceProfile) -> tuple[str, ...]:
    """The given profile first, then the bundled sweep profiles not already named."""
    return tuple(dict.fromkeys((profile.name, *SWEEP_PROFILES)))


def _profiles(profile: DeviceProfile) -> list[DeviceProfile]:
    return [profile if name == profile.name else load_profile(name)
            for name in profile_names(profile)]


def _rows(profile: DeviceProfile, quick: bool) -> tuple[tuple[str, ...], ...]:
    rows = []
    for board in _profiles(profile):
        pts = fig5_6.points(board, quick)
        for over in BASELINES:
            mean_x, geo_x = ttft.average_speedup(pts, over)
            rows.append((board.name, over, str(len(pts)), fmt(mean_x, 4), fmt(geo_x, 4)))
    return tuple(rows)


def comparisons(rows: tuple[tuple[str, ...], ...]) -> tuple[Comparison, ...]:
    return tuple(Comparison(f"{PAPER_PROFILE}: mean TTFT speedup vs {SYSTEMS[over].label}",
                            float(mean_x), TARGETS[over].value, "x",
                            f"cold start, {n} points; source: {TARGETS[over].source}")
                 for name, over, n, mean_x, _ in rows if name == PAPER_PROFILE)


NOTES = (
    "Same grid and systems on every profile; only the device numbers change. The flagship "
    "profile (sd8gen3) transfers the RK3588's secure-world costs as estimates "
    "(docs/calibration-flagship.md), so its rows show how the speedups move with storage, "
    "memory, CPU and NPU speed, not a measured phone.",
)


def run(profile: DeviceProfile, quick: bool) -> Figure:
    rows = _rows(profile, quick)
    return Figure(NAME, "FlexServe's average TTFT speedup per device profile", COLUMNS, rows,
                  plot, comparisons(rows), NOTES)


def plot(fig: Figure, path: Path) -> None:
    plt = style.pyplot()
    canvas, ax = plt.subplots(figsize=(5.5, 3.8))
    names = list(dict.fromkeys(fig.column("profile")))
    width = 0.8 / len(BASELINES)
    for k, over in enumerate(BASELINES):
        values = [float(r[3]) for name in names for r in fig.rows if r[0] == name
                  and r[1] == over]
        xs = [i + (k - (len(BASELINES) - 1) / 2) * width for i in range(len(names))]
        ax.bar(xs, values, width, label=f"vs {SYSTEMS[over].label}", edgecolor="black",
               linewidth=0.3, color=style.SYSTEM_COLOURS[over])
        ax.axhline(TARGETS[over].value, color=style.SYSTEM_COLOURS[over], linestyle="--",
                   linewidth=0.8, label=f"paper vs {SYSTEMS[over].label} (RK3588)")
    ax.axhline(1.0, color="black", linewidth=0.6)
    top = max([float(r[3]) for r in fig.rows] + [t.value for t in TARGETS.values()])
    ax.set_ylim(0, 1.35 * top)
    ax.set_xticks(range(len(names)), names)
    ax.set_xlabel("device profile")
    ax.set_ylabel("mean TTFT speedup of FlexServe (x)")
    ax.legend(fontsize="x-small", loc="upper right", ncol=2)
    ax.set_title(fig.title)
    style.save(canvas, path)
