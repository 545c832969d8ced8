"""The server's bounded queue: how many requests wait for the device, and how many run.

A request is *waiting* from admission until the worker reports it started (prefill done), then
*running* until it ends. Admission is refused at once (503 with Retry-After) when
``max_queue`` requests are already waiting: a client learns the server is busy immediately
instead of holding a connection open behind an unbounded line. The order among waiting
requests is the worker's (FIFO per model).
"""

from __future__ import annotations

from dataclasses import dataclass

from flexserve.errors import ConfigError
from flexserve.serve.api_errors import queue_full


@dataclass
class Ticket:
    """One admitted request's place: waiting until :meth:`Admission.start` moves it."""

    running: bool = False
    released: bool = False


class Admission:
    def __init__(self, max_queue: int, retry_after_s: int = 1) -> None:
        if max_queue < 1:
            raise ConfigError(f"max_queue must be >= 1, got {max_queue}")
        self.max_queue = max_queue
        self.retry_after_s = retry_after_s
        self.waiting = 0
        self.running = 0

    def admit(self) -> Ticket:
        """A place for one request; raises a 503 APIError when ``max_queue`` are waiting.
        Every admitted ticket must be given back with :meth:`release`."""
        if self.waiting >= self.max_queue:
            raise queue_full(self.retry_after_s)
        self.waiting += 1
        return Ticket()

    def start(self, ticket: Ticket) -> None:
        """The request reached the device: it stops waiting and runs."""
        if not ticket.running and not ticket.released:
            ticket.running = True
            self.waiting -= 1
            self.running += 1

    def release(self, ticket: Ticket) -> None:
        """The request ended (any way); releasing twice is harmless."""
        if ticket.released:
            return
        ticket.released = True
        if ticket.running:
            self.running -= 1
        else:
            self.waiting -= 1
