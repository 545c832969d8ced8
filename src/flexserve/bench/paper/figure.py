"""A reproduced figure: its data (CSV rows), a PNG and the rows set beside the paper's values.

Every figure module builds one :class:`Figure`. The rows are formatted strings, so the CSV of
a figure is the same bytes on every run (values are rounded when the row is made, never when
it is written). Comparisons hold only values a paper reports; ``paper`` is what it reports.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from flexserve.errors import ConfigError

Row = tuple[str, ...]


@dataclass(frozen=True)
class Comparison:
    """One of our values beside the value the paper (or TZ-LLM) reports for it."""

    label: str
    ours: float
    paper: float
    unit: str
    note: str

    @property
    def ratio(self) -> float:
        """Ours over the paper's (1.0: equal)."""
        if self.paper == 0:
            raise ConfigError(f"comparison {self.label!r} has a paper value of 0")
        return self.ours / self.paper


@dataclass(frozen=True)
class Figure:
    """One figure: a name (``fig1``...), a title, the CSV table, a plotter and comparisons."""

    name: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[Row, ...]
    plotter: Callable[[Figure, Path], None] = field(repr=False, compare=False)
    comparisons: tuple[Comparison, ...] = ()
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.rows:
            raise ConfigError(f"figure {self.name} has no rows")
        for row in self.rows:
            if len(row) != len(self.columns):
                raise ConfigError(f"figure {self.name}: row {row!r} does not match the "
                                  f"columns {self.columns!r}")

    def column(self, name: str) -> list[str]:
        try:
            index = self.columns.index(name)
        except ValueError:
            raise ConfigError(f"figure {self.name} has no column {name!r}") from None
        return [row[index] for row in self.rows]

    def write_csv(self, path: Path) -> Path:
        with path.open("w", newline="") as f:
            out = csv.writer(f, lineterminator="\n")
            out.writerow(self.columns)
            out.writerows(self.rows)
        return path

    def plot(self, path: Path) -> Path:
        self.plotter(self, path)
        return path


def fmt(value: float, digits: int = 6) -> str:
    """A value as it goes into a CSV row (fixed digits: byte-identical across runs)."""
    return f"{value:.{digits}f}"


def rows_where(fig: Figure, **equals: str) -> list[dict[str, str]]:
    """The rows (as dicts) whose named columns equal the given strings."""
    out = []
    for row in fig.rows:
        record = dict(zip(fig.columns, row, strict=True))
        if all(record[k] == v for k, v in equals.items()):
            out.append(record)
    return out


def mean(values: Sequence[float]) -> float:
    if not values:
        raise ConfigError("no values to average")
    return sum(values) / len(values)
