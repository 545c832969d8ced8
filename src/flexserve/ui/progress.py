"""A small progress bar for long operations, drawn only when stderr is a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """Progress of ``total`` units of work; silent when the stream is not a TTY."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None, width: int = 30):
        self.label = label
        self.total = max(total, 1)
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.enabled = self.stream.isatty()
        self._start_s = time.monotonic()
        self._done = 0

    def update(self, done: int, total: int | None = None) -> None:
        if total is not None:
            self.total = max(total, 1)
        self._done = min(done, self.total)
        if self.enabled:
            self._draw()

    def close(self) -> None:
        if self.enabled:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self) -> None:
        fraction = self._done / self.total
        filled = int(fraction * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        elapsed_s = time.monotonic() - self._start_s
        self.stream.write(
            f"\r{self.label} [{bar}] {self._done}/{self.total} {elapsed_s:5.1f}s"
        )
        self.stream.flush()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
