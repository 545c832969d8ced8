"""Running the server: one device worker process, one uvicorn server in front of it."""

from __future__ import annotations

from flexserve.serve.config import ServerConfig

GRACEFUL_SHUTDOWN_S = 5


def build_worker(config: ServerConfig):  # -> DeviceWorker
    from flexserve.serve.worker_client import DeviceWorker, WorkerConfig

    return DeviceWorker(WorkerConfig(system=config.system, profile=config.profile,
                                     home=config.home, preload=config.preload))


def run_server(config: ServerConfig) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM stop the worker and exit)."""
    import uvicorn

    from flexserve.serve.app import create_app

    app = create_app(config, build_worker(config))
    uvicorn.run(app, host=config.host, port=config.port, log_level="info",
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S, access_log=False)
