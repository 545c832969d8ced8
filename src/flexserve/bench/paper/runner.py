"""Run the reproduced paper figures and write CSVs, PNGs, the configuration and REPORT.md.

The CLI (``flexserve bench paper``) should call exactly::

    from flexserve.bench.paper.runner import FIGURES, run_all
    run_all(profile, out_dir, quick=quick, only=only, progress=progress)

with ``profile`` a :class:`~flexserve.timing.profile.DeviceProfile` (``load_profile(name)``),
``out_dir`` a :class:`pathlib.Path` (created if missing), ``quick`` a bool (CI-sized grids),
``only`` ``None`` for every figure or a list of names from :data:`FIGURES` (``["fig1",
"fig11"]``; ``flexserve bench FIGURE`` is ``only=[FIGURE]``), and ``progress`` ``None`` or a
callable ``progress(figure_name, done, total)`` called after each figure (``done`` counts
finished figures). It returns the :class:`~flexserve.bench.paper.figure.Figure` objects, in
:data:`FIGURES` order. Unknown names raise :class:`~flexserve.errors.ConfigError`.

Outputs: ``<out>/<fig>.csv``, ``<out>/<fig>.png``, ``<out>/config.json`` and
``<out>/REPORT.md``. Everything is deterministic: two runs write byte-identical CSVs.
"""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

import flexserve
from flexserve.bench.paper import (
    fig1,
    fig1b,
    fig2,
    fig5_6,
    fig7,
    fig8,
    fig9,
    fig10,
    fig10b,
    fig11,
    sweep,
)
from flexserve.bench.paper.background import BackgroundSpec
from flexserve.bench.paper.figure import Figure
from flexserve.bench.paper.nw_gaps import SOURCES, reclaim_gaps
from flexserve.bench.paper.report import write_report
from flexserve.errors import ConfigError
from flexserve.nwos.scenario import ScenarioConfig
from flexserve.timing.profile import DeviceProfile

Progress = Callable[[str, int, int], None]
FigureRun = Callable[[DeviceProfile, bool], Figure]

#: Every figure, in the order they are run and reported (the brief's priority order).
FIGURES: dict[str, FigureRun] = {
    fig5_6.NAME: fig5_6.run,
    fig11.NAME: fig11.run,
    fig1.NAME: fig1.run,
    fig1b.NAME: fig1b.run,
    fig2.NAME: fig2.run,
    fig7.NAME: fig7.run,
    fig8.NAME: fig8.run,
    fig9.NAME: fig9.run,
    fig10.NAME: fig10.run,
    fig10b.NAME: fig10b.run,
    sweep.NAME: sweep.run,
}
SEEDS = {fig8.NAME: fig8.SEED, fig11.NAME: fig11.SEED}


def summary(name: str) -> str:
    """The first sentence of a figure module's docstring (for help texts)."""
    module = sys.modules[FIGURES[name].__module__]
    paragraph = " ".join((module.__doc__ or name).strip().split("\n\n")[0].split())
    return paragraph.split(". ")[0].rstrip(".")


def selected(only: Sequence[str] | None) -> list[str]:
    """The figure names to run, in :data:`FIGURES` order."""
    if only is None:
        return list(FIGURES)
    if not only:
        raise ConfigError("no figure selected (pass None for every figure)")
    unknown = [name for name in only if name not in FIGURES]
    if unknown:
        raise ConfigError(f"unknown figure(s) {', '.join(unknown)}; known: "
                          f"{', '.join(FIGURES)}")
    return [name for name in FIGURES if name in only]


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def effective_config(profile: DeviceProfile, quick: bool, names: Sequence[str]) -> dict:
    return {
        "profile": profile.name, "board": profile.board, "quick": quick,
        "figures": list(names), "seeds": {k: v for k, v in SEEDS.items() if k in names},
        "sweep_profiles": list(sweep.profile_names(profile)),
        "pressure": _pressure_config(profile, quick, names),
        "versions": {"flexserve": flexserve.__version__, "python": platform.python_version(),
                     "numpy": _version("numpy"), "matplotlib": _version("matplotlib")},
    }


def _pressure_config(profile: DeviceProfile, quick: bool, names: Sequence[str]) -> dict:
    """The backgrounds and reclaim costs of the pressure figures (Fig. 1b, 7), if run."""
    out: dict = {}
    if fig7.NAME in names:
        out[fig7.NAME] = {"models": list(fig7.QUICK_MODELS if quick else fig7.MODELS),
                          "levels_gib": list(fig7.QUICK_LEVELS_GIB if quick else fig7.LEVELS_GIB),
                          "prompt_tokens": fig7.PROMPT_TOKENS,
                          "background": asdict(BackgroundSpec())}
    if fig1b.NAME in names:
        out[fig1b.NAME] = {"workloads_of_dram": [asdict(w) for w in fig1b.WORKLOADS],
                           "fragmented": asdict(ScenarioConfig(), dict_factory=_plain_dict)}
    if out:
        gaps = asdict(reclaim_gaps(profile))
        out["reclaim_gaps"] = {k: {"value": v, "source": SOURCES[k]} for k, v in gaps.items()}
    return out


def _plain_dict(items: list[tuple[str, object]]) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in items}


def run_all(profile: DeviceProfile, out_dir: Path, quick: bool,
            only: list[str] | None = None, progress: Progress | None = None,
            starting: Progress | None = None) -> list[Figure]:
    """Run the figures (all, or ``only``) and write every output under ``out_dir``.

    ``starting(name, done, total)`` is called before each figure runs (for a progress bar
    that names it), ``progress`` after it.
    """
    names = selected(only)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = []
    for done, name in enumerate(names, start=1):
        if starting is not None:
            starting(name, done - 1, len(names))
        fig = FIGURES[name](profile, quick)
        fig.write_csv(out_dir / f"{name}.csv")
        fig.plot(out_dir / f"{name}.png")
        figures.append(fig)
        if progress is not None:
            progress(name, done, len(names))
    config = effective_config(profile, quick, names)
    (out_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    write_report(figures, out_dir / "REPORT.md", profile.name, quick)
    return figures
