"""The device worker process: one emulated phone serving :class:`WorkRequest`s.

:func:`worker_main` is the process entry (spawned by :mod:`.worker_client`). It removes KV
write-back files a previous worker left on flash (ciphertext under a key that died with that
process), boots a :class:`~flexserve.systems.session.DeviceSession` for the configured system
and profile, opens the preloaded models, then serves its pipe:

- parent -> worker: ``("submit", WorkRequest)``, ``("cancel", request_id)``, ``("stop",)``;
- worker -> parent: ``("event", Event)``, ``("status", WorkerStatus)``, ``("ready",)``,
  ``("boot_failed", message)``, ``("stopped",)``.

Scheduling (:class:`WorkerLoop`): a FIFO queue per model, one running request per model, the
running requests of different models advance in round robin by ``step_tokens`` decode steps;
the pipe is polled between steps, so a cancel frees the request's secure resources within one
step (``Failed(CANCELLED)``); a queued request that is cancelled is dropped. With every queue
empty the device clock advances by the wall time that passed (idle time, which reaches
on-demand protection as on a phone). A status goes out after every state change and request
end, and at most once a second otherwise.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import deque
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from flexserve.serve.protocol import Event, Failed, FailureKind, Finished, WorkerState, WorkRequest

STATUS_INTERVAL_S = 1.0
IDLE_POLL_S = 0.2


def worker_main(conn: Connection, config: Any) -> None:
    """Process entry: ``config`` is a :class:`~.worker_client.WorkerConfig`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's: it stops us
    if config.home is not None:
        from flexserve.tee.sealing.store import HOME_ENV

        os.environ[HOME_ENV] = str(config.home)
    import torch

    torch.set_num_threads(config.torch_threads)
    WorkerLoop(conn, config).run()


def remove_stale_kv(flash_root: Path) -> int:
    """Delete KV write-back files of a previous worker; returns how many."""
    from flexserve.tee.framework.kv_store import KV_FILE_PREFIX, KV_FILE_SUFFIX

    stale = list(flash_root.glob(f"{KV_FILE_PREFIX}*{KV_FILE_SUFFIX}"))
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


class WorkerLoop:
    """The worker's scheduler around one device session (see the module docstring)."""

    def __init__(self, conn: Connection, config: Any) -> None:
        from flexserve.serve.worker_job import Job

        self.conn, self.config = conn, config
        self.session: Any = None
        self.state = WorkerState.BOOTING
        self.queues: dict[str, deque[Job]] = {}
        self.running: dict[str, Job] = {}
        self.names: list[str] = []
        self.stopping = False
        self._last_status_s = 0.0
        self._last_tick_s = time.monotonic()

    # ----- life -----
    def run(self) -> None:
        self._push_status()
        try:
            self._boot()
        except Exception as error:  # a bad system/profile name or an unusable store
            from flexserve.errors import FlexServeError

            message = str(error) if isinstance(error, FlexServeError) else \
                f"the device worker could not boot ({type(error).__name__})"
            self._send(("boot_failed", message))
            return
        self._send(("ready",))
        try:
            while not self.stopping:
                self._serve_once()
        finally:
            self._shutdown()

    def _boot(self) -> None:
        from flexserve.catalog.servable import servable_models
        from flexserve.systems.config import system
        from flexserve.systems.session import DeviceSession
        from flexserve.tee.sealing.store import ModelStore
        from flexserve.timing.profile import load_profile

        chosen, profile = system(self.config.system), load_profile(self.config.profile)
        store = ModelStore.default()
        remove_stale_kv(store.root)
        self.session = DeviceSession(chosen, profile, store=store)
        self.names = servable_models(store.root)
        for model in self.config.preload:
            self._open(model)
        self._set_state(WorkerState.READY)

    def _shutdown(self) -> None:
        jobs = [*self.running.values(), *(j for q in self.queues.values() for j in q)]
        self.running.clear()
        self.queues.clear()
        for job in jobs:
            self._emit([Failed(job.request_id, FailureKind.CANCELLED, "the worker stopped")])
        if self.session is not None:
            self.session.close()
        self._set_state(WorkerState.STOPPED)
        self._send(("stopped",))

    # ----- one turn -----
    def _serve_once(self) -> None:
        if not self.running and not any(self.queues.values()):
            self._poll(IDLE_POLL_S)
            self._advance_idle()
        else:
            self._poll(0.0)
            self._last_tick_s = time.monotonic()  # busy time is the requests' own
        self._start_queued()
        self._step_round()
        self._push_status(force=False)

    def _advance_idle(self) -> None:
        now = time.monotonic()
        elapsed, self._last_tick_s = now - self._last_tick_s, now
        if not self.running and not any(self.queues.values()):
            self.session.advance_idle(elapsed)

    def _start_queued(self) -> None:
        for model, queue in list(self.queues.items()):
            if model in self.running or not queue:
                continue
            job = queue.popleft()
            if not self._open(model, job.request_id):
                continue
            events = job.begin(self.session, self.config.step_tokens)
            if not _ends(events):
                self.running[model] = job
                self._push_status()  # one more running, one less queued
            self._emit(events)
            self._poll(0.0)

    def _step_round(self) -> None:
        for model in list(self.running):
            job = self.running.get(model)
            if job is None:  # cancelled while the pipe was polled
                continue
            events = job.step()
            if _ends(events):
                del self.running[model]
            self._emit(events)
            self._poll(0.0)

    def _open(self, model: str, request_id: str | None = None) -> bool:
        """Open ``model`` if it is not yet (LOADING meanwhile); False if that failed."""
        if model in self.session.open_blobs():
            return True
        self._set_state(WorkerState.LOADING)
        try:
            self.session.open_model(model)
        except Exception as error:
            if request_id is None:
                raise
            from flexserve.serve.worker_job import failure_of

            self._emit([failure_of(request_id, error)])
            return False
        finally:
            self._set_state(WorkerState.READY)
        return True

    # ----- the pipe -----
    def _poll(self, timeout_s: float) -> None:
        try:
            ready = self.conn.poll(timeout_s)
            while ready:
                self._handle(self.conn.recv())
                ready = self.conn.poll(0.0)
        except (EOFError, OSError):  # the parent is gone: nobody to serve
            self.stopping = True

    def _handle(self, message: tuple) -> None:
        kind = message[0]
        if kind == "submit":
            self._submit(message[1])
        elif kind == "cancel":
            self._cancel(message[1])
        elif kind == "stop":
            self.stopping = True

    def _submit(self, request: WorkRequest) -> None:
        from flexserve.serve.worker_job import Job

        if request.model not in self.names:
            self._refresh_names()
        if request.model not in self.names:
            self._emit([Failed(request.request_id, FailureKind.NOT_FOUND,
                               f"no such model: {request.model}")])
            return
        self.queues.setdefault(request.model, deque()).append(Job(request))
        self._push_status()

    def _cancel(self, request_id: str) -> None:
        for model, job in list(self.running.items()):
            if job.request_id == request_id:
                del self.running[model]
                self._emit([job.cancel()])
                return
        for queue in self.queues.values():
            for job in list(queue):
                if job.request_id == request_id:
                    queue.remove(job)
                    self._emit([Failed(request_id, FailureKind.CANCELLED,
                                       "the request was cancelled")])
                    return

    def _refresh_names(self) -> None:
        from flexserve.catalog.servable import servable_models

        self.names = servable_models(self.session.store.root)

    # ----- status and events -----
    def _set_state(self, state: WorkerState) -> None:
        if state is not self.state:
            self.state = state
            self._push_status()

    def _push_status(self, force: bool = True) -> None:
        now = time.monotonic()
        if not force and now - self._last_status_s < STATUS_INTERVAL_S:
            return
        from flexserve.serve.worker_status import worker_status

        self._last_status_s = now
        queued = sum(len(q) for q in self.queues.values())
        opened = list(self.session.open_blobs()) if self.session is not None else []
        names = list(dict.fromkeys([*self.names, *opened]))
        self._send(("status", worker_status(self.session, self.state, names,
                                            len(self.running), queued)))

    def _emit(self, events: list[Event]) -> None:
        """Send ``events``; a request's end goes after the status that no longer counts it,
        so whoever sees the end sees that status too."""
        for event in events:
            if isinstance(event, Finished | Failed):
                self._push_status()
            self._send(("event", event))

    def _send(self, message: tuple) -> None:
        try:
            self.conn.send(message)
        except (BrokenPipeError, EOFError, OSError):
            self.stopping = True
            print("flexserve worker: the server is gone", file=sys.stderr)


def _ends(events: list[Event]) -> bool:
    return any(isinstance(e, Finished | Failed) for e in events)
