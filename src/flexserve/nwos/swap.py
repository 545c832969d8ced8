"""Swap space: where reclaimed anonymous pages go. Keeps each page's identity and content."""

from __future__ import annotations

import numpy as np

from flexserve.errors import ConfigError


class SwapSpace:
    """A fixed number of swap slots holding (owner, page index, content checksum) triples."""

    def __init__(self, capacity_pages: int) -> None:
        if capacity_pages < 0:
            raise ConfigError("swap capacity must be >= 0")
        self.capacity_pages = capacity_pages
        self._owners: list[np.ndarray] = []
        self._vpns: list[np.ndarray] = []
        self._contents: list[np.ndarray] = []
        self.used_pages = 0

    @property
    def free_slots(self) -> int:
        return self.capacity_pages - self.used_pages

    def write(self, owners: np.ndarray, vpns: np.ndarray, contents: np.ndarray) -> None:
        if owners.size > self.free_slots:
            raise ConfigError("swap write larger than the free slots")
        self._owners.append(owners.copy())
        self._vpns.append(vpns.copy())
        self._contents.append(contents.copy())
        self.used_pages += int(owners.size)

    def discard_owner(self, owner: int) -> int:
        """Drop every slot of ``owner`` (its process ended); returns slots freed."""
        freed = 0
        for i, owners in enumerate(self._owners):
            keep = owners != owner
            freed += int(owners.size - keep.sum())
            self._owners[i] = owners[keep]
            self._vpns[i] = self._vpns[i][keep]
            self._contents[i] = self._contents[i][keep]
        self.used_pages -= freed
        return freed

    def contents_of(self, owner: int) -> dict[int, int]:
        """Page index -> content checksum for ``owner``'s swapped pages."""
        out: dict[int, int] = {}
        for owners, vpns, contents in zip(self._owners, self._vpns, self._contents, strict=True):
            sel = owners == owner
            out.update(zip(vpns[sel].tolist(), contents[sel].tolist(), strict=True))
        return out
