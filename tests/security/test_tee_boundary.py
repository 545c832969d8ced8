"""The compromised kernel against the trusted OS's call boundary.

The attacker writes messages itself, points memory references wherever it likes, rewrites
shared memory while the secure side works, and answers the trusted OS's Flex-Mem requests
with lies. Every attempt must end in a GP error code, with no secure byte exposed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parents[1] / "tee"))

from tee_world import CMD_ALLOC, CMD_CHECK_TWICE, CMD_ECHO, EchoTA, TeeWorld, make_world

from flexserve.monitor.audit import audit
from flexserve.monitor.smc_ids import FunctionId
from flexserve.nwos.page import PageKind
from flexserve.nwos.tee_client import ClientParam
from flexserve.tee.gp import MsgCommand, ParamType, TeeResult
from flexserve.tee.msg import MSG_BYTES, Message, MsgParam, decode

PAGE = 4096


def kernel_page(world: TeeWorld) -> int:
    """A fresh page of the attacker's own memory (identity layout: PA == IPA)."""
    return world.client.kernel.alloc_block(0, PageKind.KERNEL, 0) * PAGE


def raw_call(world: TeeWorld, msg: Message) -> Message:
    pa = kernel_page(world)
    world.platform.normal.cpu.write(pa, msg.encode())
    world.platform.normal.smc(FunctionId.TOS_CALL_WITH_ARG, pa)
    return decode(world.platform.normal.cpu.read(pa, MSG_BYTES))


def victim_secure_frame(world: TeeWorld) -> tuple[int, int]:
    """A session whose TA holds a Flex-Mem frame with a secret pattern in it."""
    session = world.client.open_session(EchoTA.uuid)
    out = world.client.invoke(session, CMD_ALLOC, [ClientParam(ParamType.VALUE_INOUT, a=PAGE)])
    return session, out[0].b


def echo_msg(session: int, in_pa: int, in_size: int, out_pa: int, out_size: int) -> Message:
    return Message(MsgCommand.INVOKE_COMMAND, function=CMD_ECHO, session=session, params=[
        MsgParam(ParamType.MEMREF_INPUT, in_pa, in_size),
        MsgParam(ParamType.MEMREF_OUTPUT, out_pa, out_size),
        MsgParam(ParamType.VALUE_INOUT, 1, 2)])


@pytest.fixture
def world() -> TeeWorld:
    return make_world()


def test_input_memref_aimed_at_secure_memory_is_refused(world: TeeWorld) -> None:
    session, secret_frame = victim_secure_frame(world)
    out_pa = kernel_page(world)
    answer = raw_call(world, echo_msg(session, secret_frame * PAGE, 64, out_pa, 64))
    assert answer.result == TeeResult.ERROR_BAD_PARAMETERS
    assert world.platform.normal.cpu.read(out_pa, 64) != EchoTA.PATTERN[::-1]


def test_output_memref_aimed_at_secure_memory_is_refused_before_the_ta_runs(
        world: TeeWorld) -> None:
    session, secret_frame = victim_secure_frame(world)
    in_pa = kernel_page(world)
    world.platform.normal.cpu.write(in_pa, b"overwrite the secret")
    answer = raw_call(world, echo_msg(session, in_pa, 20, secret_frame * PAGE, 64))
    assert answer.result == TeeResult.ERROR_BAD_PARAMETERS
    port = world.platform.secure.port
    owner = world.ta.services.owner
    assert port.read(owner, secret_frame, 0, 64) == EchoTA.PATTERN


@pytest.mark.parametrize("target", ["tee_region", "el2_region", "beyond_dram", "huge_size"])
def test_memrefs_into_firmware_or_nowhere_are_refused(world: TeeWorld, target: str) -> None:
    session = world.client.open_session(EchoTA.uuid)
    layout = world.platform.soc.layout
    pa, size = {
        "tee_region": (layout.tee_base_frame * PAGE, 64),
        "el2_region": (layout.el2_base_frame * PAGE, 64),
        "beyond_dram": (layout.dram_frames * PAGE + PAGE, 64),
        "huge_size": (kernel_page(world), 2**63),
    }[target]
    answer = raw_call(world, echo_msg(session, pa, size, kernel_page(world), 64))
    assert answer.result == TeeResult.ERROR_BAD_PARAMETERS
    assert audit(world.platform.monitor) == []


class RewritingRpc:
    """A kernel that rewrites the shared request while the TA waits on its RPC."""

    def __init__(self) -> None:
        self.world: TeeWorld | None = None
        self.target_pa = 0

    def rsmem_alloc(self, owner: int, size_bytes: int) -> np.ndarray:
        assert self.world is not None
        self.world.platform.normal.cpu.write(self.target_pa, b"evil  request!")
        return self.world.manager.rsmem_alloc(owner, size_bytes)

    def rsmem_free(self, owner: int, ipa_pages: np.ndarray) -> int:
        assert self.world is not None
        return self.world.manager.rsmem_free(owner, ipa_pages)


def test_shared_memory_rewritten_mid_call_does_not_reach_the_ta() -> None:
    rpc = RewritingRpc()
    world = make_world(rpc)
    rpc.world = world
    session = world.client.open_session(EchoTA.uuid)
    rpc.target_pa = kernel_page(world)
    world.platform.normal.cpu.write(rpc.target_pa, b"benign request")
    answer = raw_call(world, Message(MsgCommand.INVOKE_COMMAND, function=CMD_CHECK_TWICE,
                                     session=session,
                                     params=[MsgParam(ParamType.MEMREF_INPUT, rpc.target_pa,
                                                      14)]))
    assert answer.result == TeeResult.SUCCESS
    assert world.platform.normal.cpu.read(rpc.target_pa, 14) == b"evil  request!"
    assert world.ta.seen == [b"benign request"]  # the TA only ever saw its private copy


class LyingRpc:
    """A kernel that claims to have protected pages it did not, or protected for another TA."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.world: TeeWorld | None = None

    def rsmem_alloc(self, owner: int, size_bytes: int) -> np.ndarray:
        assert self.world is not None
        if self.mode == "unprotected":
            return np.array([kernel_page(self.world) // PAGE])
        return self.world.manager.rsmem_alloc(owner + 1, size_bytes)

    def rsmem_free(self, owner: int, ipa_pages: np.ndarray) -> int:
        raise AssertionError("never reached")


@pytest.mark.parametrize("mode", ["unprotected", "other_owner"])
def test_lies_about_protected_memory_fail_closed(mode: str) -> None:
    rpc = LyingRpc(mode)
    world = make_world(rpc)
    rpc.world = world
    session = world.client.open_session(EchoTA.uuid)
    answer = raw_call(world, Message(MsgCommand.INVOKE_COMMAND, function=CMD_ALLOC,
                                     session=session,
                                     params=[MsgParam(ParamType.VALUE_INOUT, PAGE, 0)]))
    assert answer.result == TeeResult.ERROR_SECURITY
    assert world.platform.secure.port.owned_frames(world.ta.services.owner).size == 0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=MSG_BYTES, max_size=MSG_BYTES))
def test_random_messages_never_crash_or_corrupt(raw: bytes) -> None:
    world = make_world()
    session = world.client.open_session(EchoTA.uuid)
    pa = kernel_page(world)
    world.platform.normal.cpu.write(pa, raw)
    result = world.platform.normal.smc(FunctionId.TOS_CALL_WITH_ARG, pa)
    assert result.status == 0
    assert audit(world.platform.monitor) == []
    out = world.client.invoke(session, CMD_ECHO, [
        ClientParam(ParamType.MEMREF_INPUT, data=b"still alive"),
        ClientParam(ParamType.MEMREF_OUTPUT, size_bytes=16),
        ClientParam(ParamType.VALUE_INOUT)])
    assert out[1].data == b"evila llits"


u64 = st.integers(min_value=0, max_value=2**64 - 1)
wire_params = st.lists(
    st.builds(MsgParam, st.sampled_from(list(ParamType)),
              st.one_of(u64, st.integers(0, 40 * 2**20)), st.one_of(u64, st.integers(0, 9000)),
              u64),
    max_size=4)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(command=st.sampled_from(list(MsgCommand)), function=st.integers(0, 8),
       session=st.integers(0, 3), params=wire_params)
def test_well_formed_messages_with_hostile_fields_fail_closed(
        command: MsgCommand, function: int, session: int, params: list[MsgParam]) -> None:
    world = make_world()
    _, secret_frame = victim_secure_frame(world)
    msg = Message(command, function=function, session=session, ta_uuid=EchoTA.uuid,
                  params=params)
    raw_call(world, msg)
    assert audit(world.platform.monitor) == []
    owner = world.ta.services.owner
    if secret_frame in world.platform.secure.port.owned_frames(owner):
        assert world.platform.secure.port.read(owner, secret_frame, 0, 64) == EchoTA.PATTERN
    else:  # the attacker closed the victim's session: its memory went back scrubbed
        assert world.platform.normal.cpu.read(secret_frame * PAGE, 64) == bytes(64)
