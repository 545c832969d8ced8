"""One emulated device with the FlexServe Framework installed, and a client for it.

Boots the board (blobs live in the flash directory), the normal-world kernel with its Flex-Mem
manager, TEE file service and NPU driver (registered with Flex-NPU), the trusted OS and the
framework TA, and wires the TA to the device's secure storage and to the work counters the
timing model reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flexserve.monitor.platform import Platform, boot_platform
from flexserve.nwos.boot import cma_window, kernel_for
from flexserve.nwos.cma import ContigRegion
from flexserve.nwos.flexmem import FlexMemManager
from flexserve.nwos.kernel import KernelConfig, NormalWorldKernel
from flexserve.nwos.npu_driver import NpuDriver
from flexserve.nwos.page import MAX_ORDER_PAGES, pages_for_bytes
from flexserve.nwos.tee_client import ClientParam, TeeClient
from flexserve.nwos.tee_contig import TeeContigService
from flexserve.nwos.tee_files import TeeFileService
from flexserve.soc.board import BoardConfig
from flexserve.soc.constants import MIB
from flexserve.tee.framework import (
    CMD_CLOSE_MODEL,
    CMD_GENERATE,
    CMD_OPEN_MODEL,
    CMD_STREAM_BEGIN,
    CMD_STREAM_CANCEL,
    CMD_STREAM_NEXT,
    FrameworkOptions,
    FrameworkTA,
    GenerateAnswer,
    GenerateRequest,
    StreamChunk,
)
from flexserve.tee.framework.meter import WorkMeter
from flexserve.tee.gp import ParamType
from flexserve.tee.sealing import SecureDevice
from flexserve.tee.trusted_os import TrustedOS, boot_trusted_os

DEFAULT_DRAM_BYTES = 1024 * MIB
MAX_ANSWER_BYTES = 1 * MIB


@dataclass
class Device:
    platform: Platform
    kernel: NormalWorldKernel
    manager: FlexMemManager
    files: TeeFileService
    npu_driver: NpuDriver
    tos: TrustedOS
    ta: FrameworkTA
    client: TeeClient
    contig: TeeContigService | None = None  # the CMA region for TZASC memory, if reserved

    @property
    def owner(self) -> int:
        return self.ta.services.owner


def boot_device(flash_root: Path, secure: SecureDevice, *,
                dram_bytes: int = DEFAULT_DRAM_BYTES,
                options: FrameworkOptions | None = None, cma_bytes: int = 0) -> Device:
    """A booted device whose flash is ``flash_root`` and whose HUK/RPMB are ``secure``'s.

    ``cma_bytes`` reserves a CMA region at boot from which the secure side can take
    contiguous TZASC memory (the strawman designs); 0 reserves none.
    """
    platform = boot_platform(BoardConfig(dram_bytes=dram_bytes, flash_root=flash_root,
                                         tee_region_base_bytes=16 * MIB,
                                         tee_region_bytes=16 * MIB))
    cma = _cma_reservation(platform, cma_bytes)
    kernel = kernel_for(platform.normal, KernelConfig(total_pages=0, cma=cma))
    contig = TeeContigService(ContigRegion(kernel, *cma[0])) if cma else None
    manager = FlexMemManager(kernel, platform.normal)
    files = TeeFileService(kernel, platform.normal)
    driver = NpuDriver(kernel, platform.normal)
    driver.register_with_monitor()
    tos = boot_trusted_os(platform, manager, contig)
    ta = tos.install(FrameworkTA)
    assert isinstance(ta, FrameworkTA)
    meter = WorkMeter({"kernel": lambda: kernel.work, "monitor": lambda: manager.work,
                       "secure": lambda: platform.secure.port.work,
                       "files": lambda: files.work})
    ta.attach(secure, files, meter, options)
    manager.register_reclaimer(ta.services.owner, ta.rsmem_reclaim)  # rsmem_reclaim
    return Device(platform, kernel, manager, files, driver, tos, ta,
                  TeeClient(kernel, platform.normal), contig)


def _cma_reservation(platform: Platform, cma_bytes: int) -> tuple[tuple[int, int], ...]:
    if cma_bytes <= 0:
        return ()
    pages = -(-pages_for_bytes(cma_bytes) // MAX_ORDER_PAGES) * MAX_ORDER_PAGES
    return ((cma_window(platform.normal.ram_ranges, pages), pages),)


class FrameworkClient:
    """The normal-world application's view of the framework: open a model, generate."""

    def __init__(self, device: Device) -> None:
        self.client = device.client
        self.session = self.client.open_session(FrameworkTA.uuid)

    def open_model(self, blob_name: str) -> None:
        self.client.invoke(self.session, CMD_OPEN_MODEL,
                           [ClientParam(ParamType.MEMREF_INPUT, data=blob_name.encode())])

    def generate(self, request: GenerateRequest) -> GenerateAnswer:
        out = self.client.invoke(self.session, CMD_GENERATE, [
            ClientParam(ParamType.MEMREF_INPUT, data=request.encode()),
            ClientParam(ParamType.MEMREF_OUTPUT, size_bytes=MAX_ANSWER_BYTES)])
        return GenerateAnswer.decode(out[1].data)

    def stream_begin(self, request: GenerateRequest) -> StreamChunk:
        """Prefill ``request``; returns the chunk of its first token."""
        out = self.client.invoke(self.session, CMD_STREAM_BEGIN, [
            ClientParam(ParamType.MEMREF_INPUT, data=request.encode()),
            ClientParam(ParamType.MEMREF_OUTPUT, size_bytes=MAX_ANSWER_BYTES)])
        return StreamChunk.decode(out[1].data)

    def stream_next(self, max_tokens: int) -> StreamChunk:
        """Decode up to ``max_tokens`` more tokens of the running stream."""
        out = self.client.invoke(self.session, CMD_STREAM_NEXT, [
            ClientParam(ParamType.VALUE_INPUT, a=max_tokens),
            ClientParam(ParamType.MEMREF_OUTPUT, size_bytes=MAX_ANSWER_BYTES)])
        return StreamChunk.decode(out[1].data)

    def stream_cancel(self) -> None:
        self.client.invoke(self.session, CMD_STREAM_CANCEL)

    def close_model(self) -> None:
        self.client.invoke(self.session, CMD_CLOSE_MODEL)

    def close(self) -> None:
        self.client.close_session(self.session)
