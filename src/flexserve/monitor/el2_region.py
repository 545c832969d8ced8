"""The EL2 component's memory: code image, header, ledger and stage-2 tables.

All of it lives in one dense DRAM range that the normal S2PT never maps. With stage-2 off
(on-demand protection) the normal world reaches it by IPA == PA, which is why EL3 hashes
this exact buffer before switching stage-2 off and verifies it before switching back on.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass

import numpy as np

from flexserve.monitor.ledger import FrameLedger
from flexserve.soc.constants import FRAME_SIZE_BYTES, frame_rounded_bytes
from flexserve.soc.memory import PhysicalMemory
from flexserve.soc.stage2 import PA_DTYPE, PERM_DTYPE, Stage2Table

EL2_CODE_BYTES = 16 * FRAME_SIZE_BYTES
HEADER_BYTES = FRAME_SIZE_BYTES
EL2_MAGIC = 0x464C_4558_454C_3200  # "FLEXEL2\0"


class Header(enum.IntEnum):
    """Indices of int64 fields in the header page."""

    MAGIC = 0
    NPU_DRIVER_IPA = 1
    NPU_DRIVER_CODE_PAGES = 2
    NPU_DRIVER_DATA_PAGES = 3
    NPU_OWNER = 4


@dataclass(frozen=True)
class _Field:
    name: str
    dtype: type
    count: int


def _fields(dram_frames: int, ipa_pages: int) -> list[_Field]:
    return [
        _Field("code", np.uint8, EL2_CODE_BYTES),
        _Field("header", np.int64, HEADER_BYTES // 8),
        _Field("state", np.uint8, dram_frames),
        _Field("owner", np.uint8, dram_frames),
        _Field("frame_ipa", np.int32, dram_frames),
        _Field("ipa_holder", np.int32, ipa_pages),
        _Field("normal_pa", PA_DTYPE, ipa_pages),
        _Field("normal_perm", PERM_DTYPE, ipa_pages),
        _Field("sandbox_pa", PA_DTYPE, ipa_pages),
        _Field("sandbox_perm", PERM_DTYPE, ipa_pages),
    ]


def el2_region_frames(dram_frames: int, ipa_pages: int) -> int:
    """Frames the EL2 region needs for a device of this size."""
    total = sum(frame_rounded_bytes(f.count * np.dtype(f.dtype).itemsize)
                for f in _fields(dram_frames, ipa_pages))
    return total // FRAME_SIZE_BYTES


def _code_image() -> np.ndarray:
    """Deterministic stand-in for the EL2 binary (hashed like real code would be)."""
    seed = hashlib.sha256(b"flex-monitor-el2").digest()
    blocks = [hashlib.sha256(seed + i.to_bytes(4, "little")).digest()
              for i in range(EL2_CODE_BYTES // 32)]
    return np.frombuffer(b"".join(blocks), dtype=np.uint8)


class El2Region:
    """Carves the region out of DRAM and exposes typed views into it."""

    def __init__(self, memory: PhysicalMemory, base_frame: int, dram_frames: int,
                 ipa_pages: int) -> None:
        self.base_frame = base_frame
        self.frame_count = el2_region_frames(dram_frames, ipa_pages)
        self.buffer = memory.add_dense_region(base_frame, self.frame_count)
        self.views: dict[str, np.ndarray] = {}
        self.offsets_bytes: dict[str, int] = {}
        offset = 0
        for f in _fields(dram_frames, ipa_pages):
            size = f.count * np.dtype(f.dtype).itemsize
            self.views[f.name] = self.buffer[offset:offset + size].view(f.dtype)
            self.offsets_bytes[f.name] = offset
            offset += frame_rounded_bytes(size)
        self.views["code"][:] = _code_image()
        self.header = self.views["header"]
        self.header[Header.MAGIC] = EL2_MAGIC

    def pa_of(self, field_name: str) -> int:
        """Physical address of a field (the layout is public firmware knowledge)."""
        return self.base_frame * FRAME_SIZE_BYTES + self.offsets_bytes[field_name]

    @property
    def frames(self) -> np.ndarray:
        return np.arange(self.base_frame, self.base_frame + self.frame_count)

    def ledger(self) -> FrameLedger:
        v = self.views
        return FrameLedger(v["state"], v["owner"], v["frame_ipa"], v["ipa_holder"])

    def normal_table(self) -> Stage2Table:
        return Stage2Table(self.views["normal_pa"], self.views["normal_perm"], "normal-s2pt")

    def sandbox_table(self) -> Stage2Table:
        return Stage2Table(self.views["sandbox_pa"], self.views["sandbox_perm"], "sandbox-s2pt")
