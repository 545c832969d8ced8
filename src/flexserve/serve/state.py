"""What every route of one server shares: its settings, worker, queue and metrics."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from flexserve.serve.admission import Admission
from flexserve.serve.config import ServerConfig
from flexserve.serve.generation import Worker
from flexserve.serve.metrics import ServerMetrics


@dataclass
class ServerState:
    config: ServerConfig
    worker: Worker
    admission: Admission
    metrics: ServerMetrics
    started_at: int = field(default_factory=lambda: int(time.time()))

    @classmethod
    def build(cls, config: ServerConfig, worker: Worker) -> ServerState:
        admission = Admission(config.max_queue)
        return cls(config, worker, admission, ServerMetrics(worker.status, admission))
