"""The device worker killed with SIGKILL mid-request: every request in flight or queued fails
WORKER_DIED at once, a new worker starts after the back-off and serves, and nothing secret is
left on the worker's flash or store (plaintext only lived in the dead process)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from flexserve.engine.gguf_file import GGUFFile
from flexserve.serve.protocol import Delta, Failed, FailureKind, Started, WorkerState, WorkRequest
from flexserve.serve.worker_client import DeviceWorker, WorkerConfig

from .worker_world import READY_TIMEOUT_S, LoopRunner, collect, ended_ok, only_failure

MODEL = "smollm2-135m"
SECRET_PROMPT = "the launch code is zebra-quartz-7781, remember it and tell a long story"

pytestmark = pytest.mark.slow


def _files_holding(root: Path, needles: list[bytes]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path.name}: {needle[:16]!r}" for needle in needles if needle in data]
    return found


def _weight_samples(gguf_path: Path) -> list[bytes]:
    """Plaintext slices of two layers' weights, as they would sit in Flex-Mem."""
    gguf = GGUFFile.open(gguf_path)
    samples = []
    for name in ("blk.0.attn_q.weight", "blk.3.ffn_down.weight"):
        data = bytes(gguf.tensor_bytes(name))
        middle = len(data) // 2
        samples.append(data[middle:middle + 256])
    return samples


def test_a_killed_worker_fails_its_requests_and_a_new_one_serves(tmp_path, smollm2_path):
    runner = LoopRunner()
    worker = DeviceWorker(WorkerConfig(home=tmp_path, preload=(MODEL,),
                                       restart_backoff_s=(0.3, 2.0)))
    stale_kv = tmp_path / "store" / "kv-41.fxkv"

    async def scenario():
        await worker.start()
        await worker.wait_ready(READY_TIMEOUT_S)
        stale_kv.write_bytes(os.urandom(4096))  # a write-back the dead worker's key sealed
        doomed = worker.submit(WorkRequest("doomed", MODEL, prompt=SECRET_PROMPT,
                                           sampling={"max_tokens": 400}))
        head = [await anext(doomed), await anext(doomed)]
        waiting = asyncio.ensure_future(collect(worker, WorkRequest(
            "waiting", MODEL, prompt="Hello", sampling={"max_tokens": 4})))
        await asyncio.sleep(0.2)
        killed = worker.pid
        assert killed is not None
        os.kill(killed, signal.SIGKILL)
        tail = [event async for event in doomed]
        state_after = worker.status().state
        refused = await collect(worker, WorkRequest("meanwhile", MODEL, prompt="Hi"))
        queued_events = await waiting
        await worker.wait_ready(READY_TIMEOUT_S)
        served = await collect(worker, WorkRequest("next", MODEL, prompt="Hello",
                                                   sampling={"max_tokens": 4}))
        status, new_pid = worker.status(), worker.pid
        await worker.stop()
        return head, tail, state_after, refused, queued_events, (killed, new_pid), served, status

    try:
        head, tail, state_after, refused, queued_events, pids, served, status = \
            runner.run(scenario())
    finally:
        runner.close()
    assert isinstance(head[0], Started) and isinstance(head[1], Delta)
    assert isinstance(tail[-1], Failed) and tail[-1].kind is FailureKind.WORKER_DIED
    assert only_failure(queued_events).kind is FailureKind.WORKER_DIED
    assert state_after is WorkerState.RESTARTING
    assert only_failure(refused).kind is FailureKind.WORKER_DIED
    assert ended_ok(served)
    assert status.restarts == 1 and status.state is WorkerState.READY
    assert pids[1] is not None and pids[1] != pids[0]
    assert worker.pid is None  # stopped
    assert not stale_kv.exists()  # the new worker deleted the old one's write-back
    needles = [SECRET_PROMPT.encode(), b"zebra-quartz-7781", *_weight_samples(smollm2_path)]
    assert _files_holding(tmp_path, needles) == []
