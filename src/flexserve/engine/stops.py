"""Stop strings over streamed text, without ever emitting (part of) a stop string.

Text that could still turn into a stop string is held back until it either completes one
(generation stops; the stop string and anything after it are dropped) or cannot any more.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class StopResult:
    """What may be shown now, and whether a stop string was completed."""

    text: str
    stopped: bool


class StopStringFilter:
    """Feed text deltas in; get back the part that is safe to emit."""

    def __init__(self, stop_strings: tuple[str, ...]) -> None:
        self.stop_strings = stop_strings
        self.pending = ""

    def push(self, delta: str) -> StopResult:
        text = self.pending + delta
        hit = self._first_stop(text)
        if hit is not None:
            self.pending = ""
            return StopResult(text[:hit], stopped=True)
        keep = self._held_back_chars(text)
        self.pending = text[len(text) - keep :] if keep else ""
        return StopResult(text[: len(text) - keep], stopped=False)

    def flush(self) -> str:
        """Release held-back text at the end of generation."""
        text, self.pending = self.pending, ""
        return text

    def _first_stop(self, text: str) -> int | None:
        positions = [i for s in self.stop_strings if (i := text.find(s)) >= 0]
        return min(positions) if positions else None

    def _held_back_chars(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that is a proper prefix of a stop string."""
        longest = 0
        for stop in self.stop_strings:
            for n in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:n]):
                    longest = n
                    break
        return longest
