"""The device worker process through its client: events, failures, cancellation, status,
idle time, and two models interleaving."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from flexserve.serve.protocol import (
    ChatMessage,
    Delta,
    Failed,
    FailureKind,
    Finished,
    Started,
    WorkerState,
    WorkRequest,
)
from flexserve.serve.worker_client import (
    HEALTHY_RESET_S,
    DeviceWorker,
    WorkerConfig,
    restart_delay,
)

from .worker_world import (
    READY_TIMEOUT_S,
    LoopRunner,
    collect,
    ended_ok,
    only_failure,
    text_of,
    wait_status,
)

MODEL = "smollm2-135m"
GREEDY = {"max_tokens": 9, "temperature": 0.0}


@pytest.fixture(scope="module")
def runner():
    runner = LoopRunner()
    yield runner
    runner.close()


@pytest.fixture(scope="module")
def worker(tmp_path_factory, smollm2_path, runner):
    config = WorkerConfig(home=tmp_path_factory.mktemp("home"), preload=(MODEL,),
                          step_tokens=4)
    worker = DeviceWorker(config)
    runner.run(worker.start())
    assert worker.status().state in (WorkerState.BOOTING, WorkerState.LOADING)
    runner.run(worker.wait_ready(READY_TIMEOUT_S))
    yield worker
    runner.run(worker.stop())
    assert worker.status().state is WorkerState.STOPPED


def test_a_request_streams_started_deltas_and_finished(worker, runner) -> None:
    events = runner.run(collect(worker, WorkRequest("a", MODEL, prompt="The sky is",
                                                    sampling=GREEDY)))
    assert ended_ok(events)
    deltas = [e for e in events if isinstance(e, Delta)]
    assert [d.completion_tokens for d in deltas] == [1, 5, 9]  # the first token, then 4 a step
    elapsed = [d.device_elapsed_s for d in deltas]
    assert elapsed == sorted(elapsed) and elapsed[0] > 0
    finished = events[-1]
    assert isinstance(finished, Finished) and finished.completion_tokens == 9
    assert finished.finish_reason == "length" and finished.prompt_tokens > 0
    timings = finished.timings
    assert (timings.system, timings.profile) == ("flexserve", "rk3588")
    assert timings.ttft_device_s == pytest.approx(elapsed[0])
    assert timings.ttft_device_s == pytest.approx(sum(timings.breakdown_device_s.values()))
    assert timings.decode_tokens_per_s_device > 0 and timings.ttft_host_s > 0
    again = runner.run(collect(worker, WorkRequest("a", MODEL, prompt="The sky is",
                                                   sampling=GREEDY)))
    assert text_of(again) == text_of(events)  # greedy, and the id is free again
    chat = runner.run(collect(worker, WorkRequest(
        "chat", MODEL, messages=(ChatMessage("user", "Hello!"),), sampling=GREEDY)))
    assert ended_ok(chat) and text_of(chat)


def test_the_status_reads_the_device(worker, runner) -> None:
    runner.run(collect(worker, WorkRequest("s", MODEL, prompt="One", sampling=GREEDY)))
    status = worker.status()
    assert status.state is WorkerState.READY and status.running == status.queued == 0
    model = next(m for m in status.models if m.name == MODEL)
    assert model.loaded and model.sealed and model.resident_bytes > 0
    counters = status.counters
    assert counters is not None
    assert counters.frames_by_state["flex_mapped"] * 4096 >= model.resident_bytes
    assert counters.cache_hits > 0 and counters.cache_misses > 0
    assert counters.world_switches > 0 and counters.bytes_decrypted > 0
    assert counters.integrity_failures == 0 and counters.device_clock_s > 0
    assert worker.pid is not None


@pytest.mark.parametrize(("request_", "kind"), [
    (WorkRequest("f", "no-such-model", prompt="x"), FailureKind.NOT_FOUND),
    (WorkRequest("f", "/etc/passwd.gguf", prompt="x"), FailureKind.NOT_FOUND),
    (WorkRequest("f", MODEL, prompt="x", sampling={"temperature": -1}), FailureKind.BAD_REQUEST),
    (WorkRequest("f", MODEL, prompt="x", sampling={"colour": 1}), FailureKind.BAD_REQUEST),
    (WorkRequest("f", MODEL, messages=(ChatMessage("assistant", "hi"),)),
     FailureKind.BAD_REQUEST),
    (WorkRequest("f", MODEL, messages=(ChatMessage("wizard", "hi"),)), FailureKind.BAD_REQUEST),
    (WorkRequest("f", MODEL), FailureKind.BAD_REQUEST),
    (WorkRequest("f", MODEL, prompt="x", sampling={"max_tokens": 10**7}), FailureKind.CONTEXT),
])
def test_failures_are_one_failed_event(worker, runner, request_, kind) -> None:
    failure = only_failure(runner.run(collect(worker, request_)))
    assert failure.kind is kind and failure.message


def test_cancel_a_running_and_a_queued_request(worker, runner) -> None:
    async def scenario():
        long = {"max_tokens": 120, "temperature": 0.0}
        running = worker.submit(WorkRequest("run", MODEL, prompt="Count: 1, 2,", sampling=long))
        first = [await anext(running), await anext(running)]
        queued = asyncio.ensure_future(collect(worker, WorkRequest("queued", MODEL,
                                                                   prompt="Hi", sampling=long)))
        await wait_status(worker, lambda s: s.queued == 1 and s.running == 1)
        await worker.cancel("queued")
        await worker.cancel("queued")  # idempotent
        queued_events = await queued
        # Deltas that reached the client before the cancel was sent are not late ones.
        arrived = worker._pending["run"].qsize()
        await worker.cancel("run")
        rest = [event async for event in running]
        return first, queued_events, rest, arrived

    first, queued_events, rest, arrived = runner.run(scenario())
    assert isinstance(first[0], Started) and isinstance(first[1], Delta)
    assert only_failure(queued_events).kind is FailureKind.CANCELLED
    assert isinstance(rest[-1], Failed) and rest[-1].kind is FailureKind.CANCELLED
    deltas = [e for e in rest if isinstance(e, Delta)]
    assert len(deltas) - arrived <= 2  # it ended within a step of the cancel
    status = worker.status()
    assert status.running == status.queued == 0 and status.state is WorkerState.READY
    assert ended_ok(runner.run(collect(worker, WorkRequest("after", MODEL, prompt="Hi",
                                                           sampling=GREEDY))))


def test_a_consumer_that_goes_away_cancels_its_request(worker, runner) -> None:
    async def scenario():
        events = worker.submit(WorkRequest("gone", MODEL, prompt="Story:",
                                           sampling={"max_tokens": 200}))
        await anext(events)
        await events.aclose()
        return await wait_status(worker, lambda s: s.running == 0, timeout_s=30)

    assert runner.run(scenario()).running == 0


def test_idle_time_advances_the_device_clock(worker, runner) -> None:
    async def scenario():
        await wait_status(worker, lambda s: s.running == s.queued == 0)
        before = worker.status().counters.device_clock_s
        start = time.monotonic()
        await asyncio.sleep(2.5)
        after = (await wait_status(
            worker, lambda s: s.counters.device_clock_s > before + 1.0)).counters.device_clock_s
        return after - before, time.monotonic() - start

    advanced_s, wall_s = runner.run(scenario())
    assert 1.0 < advanced_s <= wall_s + 0.5


def test_the_restart_delay_doubles_to_the_cap_and_resets_after_health() -> None:
    backoff = (0.5, 3.0)
    delays, next_s = [], backoff[0]
    for _ in range(5):
        delay_s, next_s = restart_delay(next_s, backoff, healthy_s=1.0)
        delays.append(delay_s)
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert restart_delay(next_s, backoff, healthy_s=HEALTHY_RESET_S)[0] == 0.5


@pytest.mark.slow
def test_two_models_interleave_by_steps(tmp_path, smollm2_path, gemma3_path, runner) -> None:
    config = WorkerConfig(home=tmp_path, preload=(MODEL, "gemma3-270m"), step_tokens=2)
    worker = DeviceWorker(config)

    async def scenario():
        await worker.start()
        await worker.wait_ready(READY_TIMEOUT_S)
        order: list[tuple[str, int]] = []

        async def run(request_id: str, model: str) -> list:
            events = []
            async for event in worker.submit(WorkRequest(request_id, model, prompt="Once",
                                                         sampling={"max_tokens": 12})):
                events.append(event)
                if isinstance(event, Delta):
                    order.append((request_id, event.completion_tokens))
            return events

        try:
            results = await asyncio.gather(run("small", MODEL), run("gemma", "gemma3-270m"))
        finally:
            await worker.stop()
        return results, order

    results, order = runner.run(scenario())
    assert all(ended_ok(events) for events in results)
    who = [request_id for request_id, _ in order]
    first_gemma, last_small = who.index("gemma"), len(who) - 1 - who[::-1].index("small")
    assert first_gemma < last_small  # gemma started before the small model finished
    switches = sum(1 for a, b in itertools.pairwise(who) if a != b)
    assert switches >= 4  # they take turns, a step each


def test_a_worker_that_cannot_boot_says_why_and_is_not_restarted(tmp_path, runner) -> None:
    from flexserve.errors import ConfigError

    worker = DeviceWorker(WorkerConfig(home=tmp_path, system="no-such-system"))

    async def scenario():
        await worker.start()
        with pytest.raises(ConfigError, match="unknown system"):
            await worker.wait_ready(READY_TIMEOUT_S)
        await wait_status(worker, lambda s: s.state is WorkerState.STOPPED)
        refused = await collect(worker, WorkRequest("x", MODEL, prompt="Hi"))
        await worker.stop()
        return refused

    assert only_failure(runner.run(scenario())).kind is FailureKind.WORKER_DIED
    assert worker.status().restarts == 0
