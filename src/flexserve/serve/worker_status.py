"""The worker's status, read off the real device objects of its :class:`DeviceSession`."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from flexserve.monitor.ledger import FrameState
from flexserve.serve.protocol import DeviceCounters, ModelState, WorkerState, WorkerStatus
from flexserve.systems.session import DeviceSession
from flexserve.tee.sealing.store import store_name


def device_counters(session: DeviceSession) -> DeviceCounters:
    device = session.device
    states = device.platform.monitor.ctx.ledger.state
    counts = np.bincount(states.astype(np.int64), minlength=len(FrameState))
    frames = {s.name.lower(): int(counts[s]) for s in FrameState}
    cache = device.ta.cache
    switches = sum(record.world_switches for record in device.ta.meter.snapshot().values())
    return DeviceCounters(
        frames_by_state=frames,
        cache_hits=cache.counters.layer_hits if cache is not None else 0,
        cache_misses=cache.counters.layer_misses if cache is not None else 0,
        world_switches=int(switches),
        bytes_decrypted=session.counters.bytes_decrypted,
        integrity_failures=session.counters.integrity_failures,
        device_clock_s=session.clock_s)


def model_states(session: DeviceSession, names: Iterable[str]) -> tuple[ModelState, ...]:
    opened = session.open_blobs()
    return tuple(ModelState(name, name in opened, session.resident_bytes(name),
                            _sealed(session, name)) for name in names)


def _sealed(session: DeviceSession, name: str) -> bool:
    try:
        return session.store.latest(store_name(name)) is not None
    except Exception:  # a name the store cannot hold has no blob
        return False


def worker_status(session: DeviceSession | None, state: WorkerState, names: Iterable[str],
                  running: int, queued: int) -> WorkerStatus:
    if session is None:
        return WorkerStatus(state, 0, running, queued, (), None)
    return WorkerStatus(state, 0, running, queued, model_states(session, names),
                        device_counters(session))
