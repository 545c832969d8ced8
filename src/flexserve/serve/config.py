"""The server's settings (``flexserve serve`` options), checked once at startup."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flexserve.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_QUEUE = 64
DEFAULT_SEND_TIMEOUT_S = 30.0
DEFAULT_MAX_BODY_BYTES = 1 << 20
DEFAULT_MAX_TOKENS = 256


@dataclass(frozen=True)
class ServerConfig:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    api_key: str | None = None
    system: str = "flexserve"
    profile: str = "rk3588"
    home: Path | None = None  # FLEXSERVE_HOME of the device (None: the default)
    max_queue: int = DEFAULT_MAX_QUEUE  # requests waiting for the device before 503s
    pace: bool = False  # stream at the modeled device's speed
    preload: tuple[str, ...] = ()
    send_timeout_s: float = DEFAULT_SEND_TIMEOUT_S
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    default_max_tokens: int = DEFAULT_MAX_TOKENS  # when a request gives no max_tokens

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be in 0..65535, got {self.port}")
        if self.max_queue < 1:
            raise ConfigError(f"--max-queue must be >= 1, got {self.max_queue}")
        if not self.send_timeout_s > 0:
            raise ConfigError(f"--send-timeout-s must be > 0, got {self.send_timeout_s}")
        if self.max_body_bytes < 1024:
            raise ConfigError(f"--max-body-bytes must be >= 1024, got {self.max_body_bytes}")
        if self.default_max_tokens < 1:
            raise ConfigError("--default-max-tokens must be >= 1")
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError("the API key must not be empty")
