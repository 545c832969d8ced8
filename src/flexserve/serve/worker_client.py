"""The server's handle on the device worker process (:mod:`.worker`).

:class:`DeviceWorker` spawns the worker (multiprocessing ``spawn``), talks to it over a pipe
it reads from the event loop without blocking (``loop.add_reader`` on the pipe's fd), routes
each request's events to its :meth:`DeviceWorker.submit` iterator and keeps the last status
the worker pushed. ``submit`` never raises for a failed request: every failure is a
:class:`Failed` event.

Death: when the worker process exits unasked (e.g. ``kill -9``) its end of the pipe closes.
Every request in flight or queued then gets ``Failed(WORKER_DIED)`` at once, the state is
RESTARTING, and a new worker starts after a back-off (``restart_backoff_s``: first delay,
doubling up to the cap; back to the first delay once a worker stayed up 60 s). Plaintext only
ever existed in the dead process's memory; the new worker deletes the KV write-back files the
old one left (ciphertext under a key that died with it).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from flexserve.errors import ConfigError
from flexserve.serve.protocol import (
    Event,
    Failed,
    FailureKind,
    Finished,
    WorkerState,
    WorkerStatus,
    WorkRequest,
)

HEALTHY_RESET_S = 60.0
STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class WorkerConfig:
    system: str = "flexserve"
    profile: str = "rk3588"
    home: Path | None = None  # FLEXSERVE_HOME for the worker (store + secure dirs)
    step_tokens: int = 4  # tokens per CMD_STREAM_NEXT
    restart_backoff_s: tuple[float, float] = (0.5, 30.0)  # first, cap (doubling)
    preload: tuple[str, ...] = ()  # models opened at boot
    torch_threads: int = 1

    def __post_init__(self) -> None:
        first, cap = self.restart_backoff_s
        if self.step_tokens < 1 or self.torch_threads < 1:
            raise ConfigError("step_tokens and torch_threads must be >= 1")
        if not 0 < first <= cap:
            raise ConfigError("restart_backoff_s must be (first, cap) with 0 < first <= cap")


def restart_delay(next_s: float, backoff_s: tuple[float, float],
                  healthy_s: float) -> tuple[float, float]:
    """(this restart's delay, the next one's) after a worker that was up ``healthy_s``: the
    delay doubles from ``backoff_s[0]`` to ``backoff_s[1]`` and starts over after
    ``HEALTHY_RESET_S`` of health."""
    first, cap = backoff_s
    delay_s = first if healthy_s >= HEALTHY_RESET_S else next_s
    return delay_s, min(delay_s * 2, cap)


class DeviceWorker:
    """One device worker process, restarted if it dies (see the module docstring)."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self._context = multiprocessing.get_context("spawn")
        self._process: Any = None
        self._conn: Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[str, asyncio.Queue[Event]] = {}
        self._state = WorkerState.STOPPED
        self._status: WorkerStatus | None = None
        self._restarts = 0
        self._backoff_s = config.restart_backoff_s[0]
        self._ready = asyncio.Event()
        self._boot_error: str | None = None
        self._ready_since = 0.0
        self._stopping = False
        self._restart_task: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()

    # ----- life -----
    async def start(self) -> None:
        """Spawn the worker; returns at once (see :meth:`wait_ready`)."""
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._spawn()

    async def wait_ready(self, timeout_s: float) -> None:
        """Until the worker is READY; ``ConfigError`` if it cannot boot, else TimeoutError."""
        async with asyncio.timeout(timeout_s):
            while True:
                if self._boot_error is not None:
                    raise ConfigError(self._boot_error)
                if self._state is WorkerState.STOPPED:
                    raise ConfigError("the device worker is stopped")
                if self._ready.is_set():
                    return
                waiter = asyncio.ensure_future(self._ready.wait())
                stopped = asyncio.ensure_future(self._stopped.wait())
                try:
                    await asyncio.wait({waiter, stopped}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
                    stopped.cancel()

    async def stop(self) -> None:
        """Stop the worker (its requests end CANCELLED) and do not restart it."""
        self._stopping = True
        if self._restart_task is not None:
            self._restart_task.cancel()
        process, conn = self._process, self._conn
        if conn is not None:
            with contextlib.suppress(OSError, BrokenPipeError):
                conn.send(("stop",))
        if process is not None:
            await asyncio.to_thread(process.join, STOP_TIMEOUT_S)
            if process.is_alive():
                process.kill()
                await asyncio.to_thread(process.join, STOP_TIMEOUT_S)
        self._drop_pipe()
        self._fail_all(FailureKind.CANCELLED, "the device worker stopped")
        self._process = None
        self._set_state(WorkerState.STOPPED)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def status(self) -> WorkerStatus:
        """The last known status (no I/O)."""
        base = self._status
        if base is None or self._state in (WorkerState.RESTARTING, WorkerState.STOPPED):
            return WorkerStatus(self._state, self._restarts, 0, 0,
                                base.models if base is not None else (), None)
        return replace(base, restarts=self._restarts)

    # ----- requests -----
    async def submit(self, request: WorkRequest) -> AsyncIterator[Event]:
        """The request's events: Started, Deltas, then Finished, or one Failed."""
        failed = self._refusal(request)
        if failed is not None:
            yield failed
            return
        queue: asyncio.Queue[Event] = asyncio.Queue()
        self._pending[request.request_id] = queue
        ended = False
        try:
            self._send(("submit", request))
            while not ended:
                event = await queue.get()
                ended = isinstance(event, Finished | Failed)
                yield event
        finally:
            self._pending.pop(request.request_id, None)
            if not ended:  # the consumer went away: free the device's resources
                self._send(("cancel", request.request_id))

    async def cancel(self, request_id: str) -> None:
        """Cancel a queued or running request (idempotent; its stream ends CANCELLED)."""
        if request_id in self._pending:
            self._send(("cancel", request_id))

    def _refusal(self, request: WorkRequest) -> Failed | None:
        if self._state in (WorkerState.RESTARTING, WorkerState.STOPPED) or self._conn is None:
            return Failed(request.request_id, FailureKind.WORKER_DIED,
                          "the device worker is not running")
        if request.request_id in self._pending:
            return Failed(request.request_id, FailureKind.BAD_REQUEST,
                          "a request with this id is already running")
        return None

    # ----- the process and its pipe -----
    def _spawn(self) -> None:
        from flexserve.serve.worker import worker_main

        parent, child = self._context.Pipe(duplex=True)
        process = self._context.Process(target=worker_main, args=(child, self.config),
                                        name="flexserve-device-worker", daemon=True)
        process.start()
        child.close()  # only the worker holds its end: its death closes the pipe
        self._process, self._conn = process, parent
        self._ready.clear()
        self._stopped.clear()
        self._boot_error = None
        self._status = None
        self._set_state(WorkerState.BOOTING)
        assert self._loop is not None
        self._loop.add_reader(parent.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            while conn.poll():
                self._on_message(conn.recv())
        except (EOFError, OSError):
            self._on_exit()

    def _on_message(self, message: tuple) -> None:
        kind = message[0]
        if kind == "event":
            queue = self._pending.get(message[1].request_id)
            if queue is not None:
                queue.put_nowait(message[1])
        elif kind == "status":
            self._status = message[1]
            if not self._stopping:
                self._state = message[1].state
        elif kind == "ready":
            self._ready_since = time.monotonic()
            self._ready.set()
        elif kind == "boot_failed":
            self._boot_error = message[1]
            self._stopping = True  # a configuration error does not heal by restarting

    def _on_exit(self) -> None:
        """The worker's end of the pipe closed: it exited."""
        self._drop_pipe()
        process, self._process = self._process, None
        if process is not None:
            process.join(0.5)  # reap it (it is gone: the pipe closed with it)
        if self._stopping:
            self._fail_all(FailureKind.CANCELLED, "the device worker stopped")
            self._set_state(WorkerState.STOPPED)
            return
        self._fail_all(FailureKind.WORKER_DIED, "the device worker exited")
        self._set_state(WorkerState.RESTARTING)
        healthy_s = time.monotonic() - self._ready_since if self._ready_since else 0.0
        delay_s, self._backoff_s = restart_delay(self._backoff_s, self.config.restart_backoff_s,
                                                 healthy_s)
        self._ready_since = 0.0
        assert self._loop is not None
        self._restart_task = self._loop.create_task(self._restart_after(delay_s))

    async def _restart_after(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        if not self._stopping:
            self._restarts += 1
            self._spawn()

    def _drop_pipe(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            if self._loop is not None:
                with contextlib.suppress(ValueError, OSError):
                    self._loop.remove_reader(conn.fileno())
            conn.close()

    def _send(self, message: tuple) -> None:
        if self._conn is None:
            return
        with contextlib.suppress(BrokenPipeError, OSError):  # the reader sees the exit
            self._conn.send(message)

    def _fail_all(self, kind: FailureKind, message: str) -> None:
        for request_id, queue in list(self._pending.items()):
            queue.put_nowait(Failed(request_id, kind, message))
        self._pending.clear()

    def _set_state(self, state: WorkerState) -> None:
        self._state = state
        if state in (WorkerState.STOPPED, WorkerState.RESTARTING):
            self._ready.clear()
            if state is WorkerState.STOPPED:
                self._stopped.set()
