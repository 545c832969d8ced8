"""REPORT.md: each figure's PNG, our values beside the paper's with the ratio, and its notes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from flexserve.bench.paper.figure import Comparison, Figure


def _value(value: float, unit: str) -> str:
    return f"{value:,.2f} {unit}"


def comparison_table(comparisons: Sequence[Comparison]) -> list[str]:
    if not comparisons:
        return ["No value of this figure is reported by the paper."]
    lines = ["| value | ours | paper | ours / paper | note |", "|---|---|---|---|---|"]
    for c in comparisons:
        lines.append(f"| {c.label} | {_value(c.ours, c.unit)} | {_value(c.paper, c.unit)} | "
                     f"{c.ratio:.2f} | {c.note} |")
    return lines


def figure_section(fig: Figure) -> list[str]:
    lines = [f"## {fig.name}: {fig.title}", "", f"![{fig.name}]({fig.name}.png)", "",
             f"Data: [{fig.name}.csv]({fig.name}.csv) ({len(fig.rows)} rows).", ""]
    lines += comparison_table(fig.comparisons)
    if fig.notes:
        lines += ["", *[f"- {note}" for note in fig.notes]]
    return [*lines, ""]


def write_report(figures: Sequence[Figure], path: Path, profile_name: str, quick: bool) -> Path:
    mode = "quick (CI-sized)" if quick else "full"
    lines = ["# FlexServe paper figures, reproduced (timing-only mode)", "",
             f"Profile `{profile_name}`, {mode} run. Our values are model outputs; the paper's "
             "are set beside them for validation only (never used as inputs). Regenerate, "
             "do not edit.", ""]
    for fig in figures:
        lines += figure_section(fig)
    path.write_text("\n".join(lines))
    return path
