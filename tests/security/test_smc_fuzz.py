"""SMC fuzzing: random ids, registers and payloads never crash the monitor or break it.

After every call all monitor invariants hold, and the victim's Flex-Mem frames stay
protected with their contents intact.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flexserve.errors import TranslationFault
from flexserve.monitor.audit import audit
from flexserve.monitor.platform import boot_platform
from flexserve.monitor.smc_ids import FunctionId
from flexserve.monitor.status import SmcResult, SmcStatus
from flexserve.soc.board import BoardConfig
from flexserve.soc.constants import FRAME_SIZE_BYTES

VICTIM_OWNER = 7
VICTIM_SECRET = b"model-weights: top secret bytes!"

known_ids = st.sampled_from([int(f) for f in FunctionId])
near_ids = known_ids.flatmap(lambda f: st.integers(f - 2, f + 2))
any_ints = st.one_of(st.integers(), st.integers(-(1 << 70), 1 << 70),
                     st.integers(0, 64), st.integers(0, 5000), st.just((1 << 64) - 1))
junk = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=True), st.text(max_size=3),
                 st.binary(max_size=4))
registers = st.lists(st.one_of(any_ints, any_ints, junk), max_size=9)
payloads = st.one_of(
    st.none(), junk,
    st.lists(st.integers(-3, 5000), max_size=12),
    st.lists(any_ints, max_size=4),
    st.lists(st.integers(0, 5000), max_size=12).map(lambda v: np.array(v, dtype=np.int64)),
    st.lists(st.integers(0, (1 << 64) - 1), max_size=4).map(
        lambda v: np.array(v, dtype=np.uint64)),
    st.just(np.zeros((2, 2), dtype=np.int64)), st.just(np.array([1.5, 2.0])))
random_calls = st.tuples(st.one_of(known_ids, near_ids, any_ints, junk), registers, payloads)

# Well-formed calls aimed at the interesting pages (firmware, victim, free memory) so the
# fuzzer also drives the monitor through successful state changes, not only refusals.
pages = st.integers(480, 720)
page_lists = st.lists(pages, min_size=1, max_size=4, unique=True)
flexmem_calls = st.tuples(
    st.sampled_from([FunctionId.FLEXMEM_PROTECT, FunctionId.FLEXMEM_RELEASE]),
    st.integers(0, 9), page_lists).map(lambda t: (int(t[0]), [t[1], len(t[2])], t[2]))
layout_calls = st.one_of(
    st.tuples(st.just(int(FunctionId.S2_MAP)),
              st.tuples(pages, pages, st.integers(1, 3), st.integers(0, 8)).map(list),
              st.none()),
    st.tuples(st.just(int(FunctionId.S2_UNMAP)),
              st.tuples(pages, st.integers(1, 3)).map(list), st.none()))
control_calls = st.tuples(
    st.sampled_from([int(FunctionId.FLEXNPU_REGISTER_DRIVER), int(FunctionId.FLEXNPU_RECALL),
                     int(FunctionId.ODP_DISABLE_S2), int(FunctionId.ODP_ENABLE_S2),
                     int(FunctionId.FLEXMEM_QUERY), int(FunctionId.ODP_STATUS)]),
    st.lists(st.one_of(pages, st.integers(0, 3), st.integers(9_000, 20_000)), max_size=3),
    st.none())
calls = st.one_of(random_calls, flexmem_calls, layout_calls, control_calls)


def _victim(platform):
    first = platform.soc.layout.el2_base_frame + platform.monitor.ctx.region.frame_count
    pages = np.arange(first, first + 3, dtype=np.int64)
    platform.normal.flexmem_protect(VICTIM_OWNER, pages)
    port = platform.secure.port
    frames = port.frames_at_ipas(VICTIM_OWNER, pages)
    port.map_frames(VICTIM_OWNER, frames)
    for frame in frames.tolist():
        port.write(VICTIM_OWNER, frame, 0, VICTIM_SECRET)
    return frames


def _check_victim(platform, frames) -> None:
    port = platform.secure.port
    for frame in frames.tolist():
        assert port.read(VICTIM_OWNER, frame, 0, len(VICTIM_SECRET)) == VICTIM_SECRET
        with pytest.raises(TranslationFault):
            platform.normal.cpu.read(frame * FRAME_SIZE_BYTES, 8)


@pytest.mark.parametrize("with_victim", [True, False])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequence=st.lists(calls, min_size=1, max_size=25))
def test_random_smcs_never_crash_or_corrupt(tmp_path_factory, with_victim, sequence):
    flash = tmp_path_factory.mktemp("flash")
    platform = boot_platform(BoardConfig.small(flash_root=flash))
    frames = _victim(platform) if with_victim else None
    for fid, args, payload in sequence:
        result = platform.normal.smc(fid, *args, payload=payload)
        assert isinstance(result, SmcResult) and isinstance(result.status, SmcStatus)
        assert audit(platform.monitor) == []
        if frames is not None:
            _check_victim(platform, frames)


@functools.cache
def _shared_platform():
    return boot_platform(BoardConfig.small())


@settings(max_examples=40, deadline=None)
@given(fid=st.one_of(st.integers(), st.integers(-(1 << 80), 1 << 80)).filter(
    lambda f: f not in {int(x) for x in FunctionId}))
def test_unknown_function_ids_are_not_supported(fid):
    result = _shared_platform().normal.smc(fid, 1, 2, 3)
    assert result.status is SmcStatus.NOT_SUPPORTED
