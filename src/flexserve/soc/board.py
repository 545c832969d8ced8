"""The SoC assembly: DRAM, TZASC, bus, SMMU, bus masters, NPU and flash, with a layout.

Physical address map (default, 16 GiB DRAM)::

    0x0000_0000 ..              normal-world DRAM
    tee_region_base ..          TZASC region 0: EL3 monitor + trusted OS (+ framework code)
    el2_base ..                 EL2 region (carved by the firmware at boot, stage-2 hidden)
    ...         .. dram_bytes   normal-world DRAM
    dram_bytes ..               NPU MMIO: one register page + the SRAM debug window

The hardware has no policy: the firmware (``flexserve.monitor``) installs the stage-2
tables and programs the SMMU and the TZASC at boot.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from flexserve.errors import ConfigError
from flexserve.soc.access import World
from flexserve.soc.bus import PhysicalBus
from flexserve.soc.constants import FRAME_SHIFT, FRAME_SIZE_BYTES, GIB, KIB, MIB
from flexserve.soc.cpu import NormalWorldCPU, SandboxCPU, Stage2Regime
from flexserve.soc.dma import DmaMaster
from flexserve.soc.flash import FlashController, FlashStorage
from flexserve.soc.memory import BackingMode, PhysicalMemory
from flexserve.soc.npu import NpuDevice
from flexserve.soc.smmu import Smmu, StreamId
from flexserve.soc.stage2 import Stage2Table
from flexserve.soc.tzasc import Tzasc, TzascRegion

TEE_TZASC_REGION = 0


@dataclass(frozen=True)
class BoardConfig:
    """Sizes and placement of the emulated device's hardware."""

    dram_bytes: int = 16 * GIB
    backing: BackingMode = BackingMode.BYTES
    tee_region_base_bytes: int = 128 * MIB
    tee_region_bytes: int = 64 * MIB
    npu_sram_bytes: int = 64 * KIB
    flash_root: Path | None = field(default=None)

    @classmethod
    def small(cls, **overrides: object) -> BoardConfig:
        """A tiny board for tests: 16 MiB DRAM, 1 MiB TEE region at 1 MiB."""
        values: dict[str, object] = dict(dram_bytes=16 * MIB, tee_region_base_bytes=1 * MIB,
                                         tee_region_bytes=1 * MIB, npu_sram_bytes=16 * KIB)
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    def validate(self) -> None:
        for name in ("dram_bytes", "tee_region_base_bytes", "tee_region_bytes",
                     "npu_sram_bytes"):
            value = getattr(self, name)
            if value < 0 or value % FRAME_SIZE_BYTES:
                raise ConfigError(f"{name} must be a non-negative multiple of 4 KiB")
        if self.tee_region_bytes == 0 or \
                self.tee_region_base_bytes + self.tee_region_bytes > self.dram_bytes:
            raise ConfigError("TEE region must be non-empty and inside DRAM")


@dataclass(frozen=True)
class MemoryLayout:
    """Frame/page numbers derived from a :class:`BoardConfig`."""

    dram_frames: int
    tee_base_frame: int
    tee_frames: int
    npu_mmio_page: int
    npu_mmio_pages: int

    @property
    def el2_base_frame(self) -> int:
        return self.tee_base_frame + self.tee_frames

    @property
    def ipa_pages(self) -> int:
        """Size of the normal world's IPA space: DRAM plus device windows."""
        return self.npu_mmio_page + self.npu_mmio_pages


class SoC:
    """The hardware of one device."""

    def __init__(self, config: BoardConfig | None = None) -> None:
        self.config = config or BoardConfig()
        self.config.validate()
        self.memory = PhysicalMemory(self.config.dram_bytes, self.config.backing)
        self.tzasc = Tzasc(self.memory.frame_count)
        self.bus = PhysicalBus(self.memory, self.tzasc)
        self.smmu = Smmu(self.bus)
        self.npu = NpuDevice(DmaMaster(StreamId.NPU, self.smmu, self.bus),
                             self.config.npu_sram_bytes)
        self.npu_window = self.bus.attach(self.memory.frame_count, self.npu)
        root = self.config.flash_root
        if root is None:  # a private directory, removed with this SoC
            self._flash_tmp = tempfile.TemporaryDirectory(prefix="flexserve-flash-")
            root = Path(self._flash_tmp.name)
        self.flash = FlashController(FlashStorage(root),
                                     DmaMaster(StreamId.FLASH, self.smmu, self.bus))
        self.generic_dma = DmaMaster(StreamId.GENERIC_DMA, self.smmu, self.bus)
        self.layout = MemoryLayout(
            dram_frames=self.memory.frame_count,
            tee_base_frame=self.config.tee_region_base_bytes >> FRAME_SHIFT,
            tee_frames=self.config.tee_region_bytes >> FRAME_SHIFT,
            npu_mmio_page=self.npu_window.base_page,
            npu_mmio_pages=self.npu.mmio_page_count)
        self.normal_regime: Stage2Regime | None = None
        self.sandbox_regime: Stage2Regime | None = None

    # ----- firmware boot hooks -----
    def secure_tee_region(self) -> None:
        """TZASC region 0 covers the EL3 monitor and the trusted OS."""
        self.tzasc.set_region(TEE_TZASC_REGION,
                              TzascRegion(self.layout.tee_base_frame, self.layout.tee_frames))

    def install_stage2(self, normal: Stage2Table, sandbox: Stage2Table) -> None:
        """Point the normal world and the sandbox at their tables; normal DMA shares them."""
        self.normal_regime = Stage2Regime(normal, enabled=True)
        self.sandbox_regime = Stage2Regime(sandbox, enabled=True)
        self.normal_cpu = NormalWorldCPU(self.bus, self.normal_regime)
        self.sandbox_cpu = SandboxCPU(self.bus, self.sandbox_regime)
        for stream in StreamId:
            self.smmu.configure(stream, self.normal_regime, World.NORMAL)
