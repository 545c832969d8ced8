"""OpenAI-style errors: one exception type, one JSON shape, one status per failure kind.

Every error the server returns is ``{"error": {"message", "type", "param", "code"}}`` with the
HTTP status OpenAI uses for it. Worker failures (:class:`FailureKind`) map to statuses here and
nowhere else; security failures say nothing beyond "security check failed".
"""

from __future__ import annotations

from typing import Any

from flexserve.serve.protocol import Failed, FailureKind

INVALID_REQUEST = "invalid_request_error"
AUTHENTICATION = "authentication_error"
NOT_FOUND = "not_found_error"
SERVER = "server_error"


class APIError(Exception):
    """An error answered to the client as an OpenAI error object."""

    def __init__(self, status: int, message: str, type_: str = INVALID_REQUEST,
                 param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type_: str, param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


_FAILURES: dict[FailureKind, tuple[int, str, str | None]] = {
    FailureKind.BAD_REQUEST: (400, INVALID_REQUEST, None),
    FailureKind.CONTEXT: (400, INVALID_REQUEST, "context_length_exceeded"),
    FailureKind.NOT_FOUND: (404, NOT_FOUND, "model_not_found"),
    FailureKind.SECURITY: (500, SERVER, "security_check_failed"),
    FailureKind.WORKER_DIED: (500, SERVER, "worker_died"),
    FailureKind.CANCELLED: (503, SERVER, "cancelled"),
    FailureKind.INTERNAL: (500, SERVER, None),
}


def from_failure(failed: Failed) -> APIError:
    """The HTTP error for a worker's :class:`Failed` event."""
    status, type_, code = _FAILURES[failed.kind]
    param = "model" if failed.kind is FailureKind.NOT_FOUND else None
    message = "security check failed" if failed.kind is FailureKind.SECURITY else failed.message
    return APIError(status, message, type_, param, code)


def model_not_found(model: str) -> APIError:
    return APIError(404, f"The model {model!r} does not exist", NOT_FOUND, "model",
                    "model_not_found")


def queue_full(retry_after_s: int) -> APIError:
    return APIError(503, "The server is at capacity; retry later", SERVER, None,
                    "server_overloaded", {"Retry-After": str(retry_after_s)})


def unauthorized() -> APIError:
    return APIError(401, "Missing or invalid API key (send 'Authorization: Bearer KEY')",
                    AUTHENTICATION, None, "invalid_api_key")


def body_too_large(limit_bytes: int) -> APIError:
    return APIError(413, f"Request body exceeds {limit_bytes} bytes", INVALID_REQUEST, None,
                    "request_too_large")


def device_unavailable(retry_after_s: int) -> APIError:
    return APIError(503, "The device worker is restarting; retry later", SERVER, None,
                    "device_unavailable", {"Retry-After": str(retry_after_s)})
