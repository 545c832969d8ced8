"""``GET /metrics``: Prometheus metrics of one server, in a registry of its own.

Request-level metrics (counts by endpoint and outcome, TTFT, inter-token latency, duration) are
recorded as requests run. Live values (the server's queue, the worker's state, the device's
Flex-Mem frames and counters) are read from :class:`WorkerStatus` at scrape time, so a scrape
always shows the last state the worker reported. Device counters restart from zero when the
worker restarts (Prometheus treats that as a counter reset).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from flexserve.serve.admission import Admission
from flexserve.serve.protocol import WorkerState, WorkerStatus

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
TTFT_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
ITL_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
DURATION_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

#: device counters exported as Prometheus counters: (metric name, DeviceCounters field, help)
_DEVICE_COUNTERS = (
    ("flexserve_cache_hits", "cache_hits", "Layers served resident from the Flex-Mem cache"),
    ("flexserve_cache_misses", "cache_misses", "Layers loaded because they were not resident"),
    ("flexserve_world_switches", "world_switches", "Normal/secure world switches"),
    ("flexserve_bytes_decrypted", "bytes_decrypted", "Model bytes decrypted in the TEE"),
    ("flexserve_integrity_failures", "integrity_failures", "Failed integrity checks"),
)


class ServerMetrics:
    """The metrics of one app; ``status`` returns the worker's last known status."""

    def __init__(self, status: Callable[[], WorkerStatus], admission: Admission) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("flexserve_requests", "Requests by endpoint and outcome",
                                ["endpoint", "outcome"], registry=self.registry)
        self.ttft_s = Histogram("flexserve_ttft_seconds", "Time to first token",
                                ["clock"], buckets=TTFT_BUCKETS_S, registry=self.registry)
        self.inter_token_s = Histogram(
            "flexserve_inter_token_latency_seconds", "Time between consecutive tokens",
            ["clock"], buckets=ITL_BUCKETS_S, registry=self.registry)
        self.duration_s = Histogram(
            "flexserve_request_duration_seconds", "Host time from receipt to the last byte",
            ["endpoint"], buckets=DURATION_BUCKETS_S, registry=self.registry)
        self.registry.register(_LiveCollector(status, admission))

    def count(self, endpoint: str, outcome: str) -> None:
        self.requests.labels(endpoint=endpoint, outcome=outcome).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _LiveCollector(Collector):
    def __init__(self, status: Callable[[], WorkerStatus], admission: Admission) -> None:
        self._status = status
        self._admission = admission

    def collect(self) -> Iterator[Metric]:
        status = self._status()
        yield _gauge("flexserve_queue_length", "Requests waiting for the device (server)",
                     self._admission.waiting)
        yield _gauge("flexserve_running_requests", "Requests generating (server)",
                     self._admission.running)
        yield _gauge("flexserve_worker_queued_requests", "Requests queued in the worker",
                     status.queued)
        yield _gauge("flexserve_worker_running_requests", "Requests the worker is generating",
                     status.running)
        yield _gauge("flexserve_worker_ready", "1 when the device worker is ready",
                     int(status.state is WorkerState.READY))
        restarts = CounterMetricFamily("flexserve_worker_restarts",
                                       "Times the device worker was restarted")
        restarts.add_metric([], status.restarts)
        yield restarts
        yield from _model_metrics(status)
        yield from _device_metrics(status)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _model_metrics(status: WorkerStatus) -> Iterator[Metric]:
    loaded = GaugeMetricFamily("flexserve_model_loaded", "1 when a session has the model open",
                               labels=["model"])
    resident = GaugeMetricFamily("flexserve_model_resident_bytes",
                                 "Weight bytes the Flex-Mem cache keeps", labels=["model"])
    for model in status.models:
        loaded.add_metric([model.name], int(model.loaded))
        resident.add_metric([model.name], model.resident_bytes)
    yield loaded
    yield resident


def _device_metrics(status: WorkerStatus) -> Iterator[Metric]:
    counters = status.counters
    if counters is None:
        return
    frames = GaugeMetricFamily("flexserve_flexmem_frames", "Flex-Mem frames by state",
                               labels=["state"])
    for state, count in sorted(counters.frames_by_state.items()):
        frames.add_metric([state], count)
    yield frames
    for name, field, documentation in _DEVICE_COUNTERS:
        family = CounterMetricFamily(name, documentation)
        family.add_metric([], getattr(counters, field))
        yield family
    yield _gauge("flexserve_device_clock_seconds", "The emulated phone's virtual clock",
                 counters.device_clock_s)
