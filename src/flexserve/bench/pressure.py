"""TTFT under background memory pressure, on the real mechanisms (bundled models).

One emulated phone serves SmolLM2 and Gemma 3 270M in turn with a Flex-Mem cache. Between
requests a background app (as ``stress-ng --vm-keep``) grows to a level of the phone's
memory, then shrinks again: its allocations go through the kernel's reclaim order (page
cache, ``rsmem_reclaim`` into the FlexServe cache, swap, then the low-memory killer), and the
next requests pay for what the cache gave up. Each step reports the level, the cache's cap
and resident bytes, where the app's pages came from, and the modeled TTFT of both models.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from flexserve.engine.sampling import SamplingParams
from flexserve.nwos.events import EventKind
from flexserve.nwos.workload import VmKeepApp
from flexserve.soc.constants import MIB
from flexserve.systems.config import FLEXSERVE
from flexserve.systems.runner import Prompt
from flexserve.systems.session import DeviceSession
from flexserve.tee.sealing.store import ModelStore
from flexserve.timing.profile import DeviceProfile

#: Background memory levels in fractions of DRAM: rising, then falling (hysteresis shows).
LEVELS = (0.0, 0.5, 0.7, 0.8, 0.9, 0.7, 0.5, 0.0)
DRAM_BYTES = 1024 * MIB
CACHE_BYTES = 512 * MIB
MODELS = (("smollm2-135m", Prompt("Name three colors.")),
          ("gemma3-270m", Prompt("Once upon a time", raw=True)))
REQUESTS_PER_STEP = 1


@dataclass(frozen=True)
class PressureStep:
    level: float
    app_mib: float
    cap_mib: float
    resident_mib: float
    secure_reclaimed_mib: float
    killed: int
    ttft_s: dict[str, float]


def _events(session: DeviceSession, since: int, kind: EventKind) -> int:
    return sum(e.pages for e in session.device.kernel.events.events[since:] if e.kind is kind)


def run_pressure(profile: DeviceProfile, store: ModelStore | None = None,
                 levels: Sequence[float] = LEVELS, max_tokens: int = 4,
                 on_progress: Callable[[int, int], None] | None = None) -> list[PressureStep]:
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens)
    steps = []
    with DeviceSession(FLEXSERVE, profile, store=store, cache_bytes=CACHE_BYTES,
                       dram_bytes=DRAM_BYTES) as session:
        for model, prompt in MODELS:  # warm: both models cached
            session.generate(model, prompt, params)
        app: VmKeepApp | None = None
        for i, level in enumerate(levels):
            first = len(session.device.kernel.events.events)
            if app is not None:
                session.device.kernel.exit_app(app.app)
            app = VmKeepApp.start(session.device.kernel, f"vm-keep-{i}",
                                  int(level * DRAM_BYTES)) if level else None
            ttft = {}
            for _ in range(REQUESTS_PER_STEP):
                for model, prompt in MODELS:
                    ttft[model] = session.generate(model, prompt, params).timing.ttft_s
            steps.append(_step(session, level, app, first, ttft))
            if on_progress is not None:
                on_progress(len(steps), len(levels))
    return steps


def _step(session: DeviceSession, level: float, app: VmKeepApp | None, first: int,
          ttft: dict[str, float]) -> PressureStep:
    cache = session.device.ta.cache
    assert cache is not None
    return PressureStep(level, app.resident_bytes / MIB if app else 0.0, cache.cap_bytes / MIB,
                        cache.resident_bytes / MIB,
                        _events(session, first, EventKind.SECURE_RECLAIM) * 4096 / MIB,
                        sum(1 for e in session.device.kernel.events.events[first:]
                            if e.kind is EventKind.KILL), ttft)
