"""Access kinds and stage-2 permission bits."""

from __future__ import annotations

import enum


class Perm(enum.IntFlag):
    """Stage-2 / SMMU permission bits stored per page (uint8)."""

    NONE = 0
    R = 1
    W = 2
    X = 4
    RW = R | W
    RX = R | X
    RWX = R | W | X


class Access(enum.Enum):
    """What an access wants to do; maps onto the permission bit it needs."""

    READ = Perm.R
    WRITE = Perm.W
    EXEC = Perm.X

    @property
    def required(self) -> Perm:
        return self.value


class World(enum.IntEnum):
    """Security state of a bus master (the NS bit of a transaction)."""

    NORMAL = 0
    SECURE = 1
