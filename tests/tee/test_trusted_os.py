"""GlobalPlatform-style sessions through the forwarded SMC, end to end."""

from __future__ import annotations

import uuid

import pytest
from tee_world import (
    CMD_ALLOC,
    CMD_ECHO,
    CMD_FREE,
    EchoTA,
    TeeWorld,
    make_world,
)

from flexserve.errors import ConfigError, TranslationFault
from flexserve.nwos.tee_client import ClientParam, TeeClientError
from flexserve.tee.gp import ParamType, TeeResult
from flexserve.tee.trusted_os import TrustedOS


@pytest.fixture
def world() -> TeeWorld:
    return make_world()


def echo_params(payload: bytes, capacity: int, value: int) -> list[ClientParam]:
    return [ClientParam(ParamType.MEMREF_INPUT, data=payload),
            ClientParam(ParamType.MEMREF_OUTPUT, size_bytes=capacity),
            ClientParam(ParamType.VALUE_INOUT, a=value, b=9)]


def test_open_invoke_close(world: TeeWorld) -> None:
    session = world.client.open_session(EchoTA.uuid)
    out = world.client.invoke(session, CMD_ECHO, echo_params(b"hello, TEE", 64, 41))
    assert out[1].data == b"EET ,olleh"
    assert (out[2].a, out[2].b) == (42, 9)
    world.client.close_session(session)
    assert world.tos.open_sessions == 0


def test_payload_larger_than_a_page_crosses_intact(world: TeeWorld) -> None:
    payload = bytes(range(256)) * 40  # 10 KiB, three pages
    session = world.client.open_session(EchoTA.uuid)
    out = world.client.invoke(session, CMD_ECHO, echo_params(payload, len(payload), 0))
    assert out[1].data == payload[::-1]


def test_session_ids_are_distinct(world: TeeWorld) -> None:
    first = world.client.open_session(EchoTA.uuid)
    second = world.client.open_session(EchoTA.uuid)
    assert first != second and world.tos.open_sessions == 2


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda c, s: c.open_session(uuid.uuid4()), TeeResult.ERROR_ITEM_NOT_FOUND),
        (lambda c, s: c.invoke(s + 100, CMD_ECHO), TeeResult.ERROR_ITEM_NOT_FOUND),
        (lambda c, s: c.invoke(s, 999), TeeResult.ERROR_NOT_SUPPORTED),
        (lambda c, s: c.invoke(s, CMD_ECHO), TeeResult.ERROR_BAD_PARAMETERS),
        (lambda c, s: c.invoke(s, CMD_ECHO, echo_params(b"0123456789", 4, 0)),
         TeeResult.ERROR_SHORT_BUFFER),
    ],
)
def test_refusals_carry_gp_result_codes(world: TeeWorld, call, expected: TeeResult) -> None:
    session = world.client.open_session(EchoTA.uuid)
    with pytest.raises(TeeClientError) as caught:
        call(world.client, session)
    assert caught.value.result == expected
    assert world.tos.open_sessions == 1  # a refused call leaves the session usable
    world.client.invoke(session, CMD_ECHO, echo_params(b"ok", 2, 0))


def test_closing_twice_is_refused(world: TeeWorld) -> None:
    session = world.client.open_session(EchoTA.uuid)
    world.client.close_session(session)
    with pytest.raises(TeeClientError) as caught:
        world.client.close_session(session)
    assert caught.value.result == TeeResult.ERROR_ITEM_NOT_FOUND


def test_client_pages_are_returned_after_each_call(world: TeeWorld) -> None:
    kernel = world.client.kernel
    before = kernel.buddy.free_pages
    session = world.client.open_session(EchoTA.uuid)
    world.client.invoke(session, CMD_ECHO, echo_params(b"x" * 9000, 9000, 1))
    assert kernel.buddy.free_pages == before


def test_secure_memory_comes_from_flexmem_and_goes_back_zeroed(world: TeeWorld) -> None:
    session = world.client.open_session(EchoTA.uuid)
    out = world.client.invoke(session, CMD_ALLOC, [ClientParam(ParamType.VALUE_INOUT, a=8192)])
    frames, first_frame = out[0].a, out[0].b
    assert frames == 2 and world.manager.lent_pages() == 2
    cpu = world.platform.normal.cpu
    with pytest.raises(TranslationFault):
        cpu.read(first_frame * 4096, 64)  # identity layout: the frame's IPA is its PA
    world.client.invoke(session, CMD_FREE)
    assert world.manager.lent_pages() == 0
    assert cpu.read(first_frame * 4096, 64) == bytes(64)


def test_closing_a_session_frees_its_secure_memory(world: TeeWorld) -> None:
    session = world.client.open_session(EchoTA.uuid)
    world.client.invoke(session, CMD_ALLOC, [ClientParam(ParamType.VALUE_INOUT, a=3 * 4096)])
    world.client.close_session(session)
    assert world.manager.lent_pages() == 0


def test_installing_a_ta_twice_is_refused(world: TeeWorld) -> None:
    with pytest.raises(ConfigError):
        world.tos.install(EchoTA)


def test_a_second_trusted_os_cannot_take_over_the_entry(world: TeeWorld) -> None:
    from flexserve.errors import SMCError

    with pytest.raises(SMCError):
        world.platform.monitor.dispatcher.register_trusted_os(
            TrustedOS(world.platform.secure.port).entry)


def test_raw_call_is_answered_in_the_message_and_its_work_reported(world: TeeWorld) -> None:
    from flexserve.monitor.smc_ids import FunctionId
    from flexserve.nwos.page import PageKind
    from flexserve.tee.msg import MSG_BYTES, decode

    pa = world.client.kernel.alloc_block(0, PageKind.KERNEL, 0) * 4096
    cpu = world.platform.normal.cpu
    cpu.write(pa, bytes(MSG_BYTES))  # all zero: OPEN_SESSION of the nil UUID
    result = world.platform.normal.smc(FunctionId.TOS_CALL_WITH_ARG, pa)
    assert result.work.world_switches == 2
    assert result.work.bytes_copied == 2 * MSG_BYTES  # copied in, answer copied out
    assert decode(cpu.read(pa, MSG_BYTES)).result == TeeResult.ERROR_ITEM_NOT_FOUND
