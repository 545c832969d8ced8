"""A booted small device with a normal-world kernel, Flex-Mem manager, trusted OS and client,
plus a test TA that exercises every parameter kind and secure memory."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from flexserve.monitor.platform import Platform, boot_platform
from flexserve.nwos.boot import kernel_for
from flexserve.nwos.flexmem import FlexMemManager
from flexserve.nwos.kernel import KernelConfig
from flexserve.nwos.tee_client import TeeClient
from flexserve.nwos.watermarks import Watermarks
from flexserve.soc.board import BoardConfig
from flexserve.tee.gp import Origin, ParamType, TeeError, TeeResult
from flexserve.tee.ta import TaParam, TrustedApplication, expect_types
from flexserve.tee.trusted_os import NormalWorldRpc, SecureAllocation, TrustedOS, boot_trusted_os

MIB = 1 << 20

CMD_ECHO = 1  # memref in -> memref out (reversed), value in -> value out (+1)
CMD_ALLOC = 2  # value in a = bytes; fills secure memory with a pattern; value out = frames
CMD_FREE = 3  # frees everything the session allocated
CMD_CHECK_TWICE = 4  # reads its input, calls the normal world (alloc), reads it again
CMD_SECRET = 5  # value out: first frame of the session's secure memory


class EchoTA(TrustedApplication):
    uuid = uuid.UUID("8aaaf200-2450-11e4-abe2-0002a5d5c51b")
    PATTERN = b"\xa5" * 64

    def __init__(self, services) -> None:
        super().__init__(services)
        self.commands = {CMD_ECHO: self.echo, CMD_ALLOC: self.alloc, CMD_FREE: self.free,
                         CMD_CHECK_TWICE: self.check_twice, CMD_SECRET: self.secret}
        self.seen: list[bytes] = []

    def open_session(self, params: list[TaParam]) -> list[SecureAllocation]:
        return []

    def close_session(self, session: list[SecureAllocation]) -> None:
        self.free(session, [])

    def echo(self, session, params: list[TaParam]) -> None:
        expect_types(params, ParamType.MEMREF_INPUT, ParamType.MEMREF_OUTPUT,
                     ParamType.VALUE_INOUT)
        params[1].set_output(params[0].input_bytes()[::-1])
        a, b = params[2].value()
        params[2].set_value(a + 1, b)

    def alloc(self, session: list[SecureAllocation], params: list[TaParam]) -> None:
        expect_types(params, ParamType.VALUE_INOUT)
        size_bytes, _ = params[0].value()
        allocation = self.services.alloc_secure(size_bytes)
        allocation.buffer.write(0, self.PATTERN)
        session.append(allocation)
        params[0].set_value(int(allocation.frames.size), int(allocation.frames[0]))

    def free(self, session: list[SecureAllocation], params: list[TaParam]) -> None:
        while session:
            self.services.free_secure(session.pop())

    def check_twice(self, session: list[SecureAllocation], params: list[TaParam]) -> None:
        expect_types(params, ParamType.MEMREF_INPUT)
        first = params[0].input_bytes()
        if first != b"benign request":
            raise TeeError(TeeResult.ERROR_ACCESS_DENIED, Origin.TRUSTED_APP)
        session.append(self.services.alloc_secure(4096))  # the normal world runs here
        self.seen.append(params[0].input_bytes())

    def secret(self, session: list[SecureAllocation], params: list[TaParam]) -> None:
        expect_types(params, ParamType.VALUE_OUTPUT)
        params[0].set_value(int(session[0].frames[0]))


@dataclass
class TeeWorld:
    platform: Platform
    manager: FlexMemManager
    tos: TrustedOS
    client: TeeClient
    ta: EchoTA


def make_world(rpc: NormalWorldRpc | None = None) -> TeeWorld:
    platform = boot_platform(BoardConfig.small(dram_bytes=32 * MIB))
    kernel = kernel_for(platform.normal, KernelConfig(total_pages=1,
                                                      watermarks=Watermarks(16, 32, 64)))
    manager = FlexMemManager(kernel, platform.normal)
    tos = boot_trusted_os(platform, rpc or manager)
    ta = tos.install(EchoTA)
    assert isinstance(ta, EchoTA)
    return TeeWorld(platform, manager, tos, TeeClient(kernel, platform.normal), ta)
