"""The ASGI app: routes, OpenAI-style error handlers, the worker's lifespan, middlewares.

``create_app(config, worker)`` builds one server around one device worker: the worker starts
with the app (``/health`` says 503 until it is ready) and stops with it. Every error leaves
as ``{"error": {...}}``: validation errors are 400 (not FastAPI's 422), unknown routes 404,
and anything unexpected a 500 that tells the client nothing internal.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from flexserve import __version__
from flexserve.serve import routes_generate, routes_info
from flexserve.serve.api_errors import INVALID_REQUEST, NOT_FOUND, SERVER, APIError, error_body
from flexserve.serve.config import ServerConfig
from flexserve.serve.middleware import ApiKeyGuard, BodyLimit
from flexserve.serve.state import ServerState

LOG = logging.getLogger("flexserve.serve")


def create_app(config: ServerConfig, worker: Any) -> Any:
    """The server as an ASGI app (the API key guard and body limit wrap the FastAPI app)."""
    state = ServerState.build(config, worker)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await worker.start()
        try:
            yield
        finally:
            await worker.stop()

    app = FastAPI(title="FlexServe", version=__version__, lifespan=lifespan,
                  description="OpenAI-compatible serving on the emulated secure device.")
    app.state.flexserve = state
    app.include_router(routes_generate.router)
    app.include_router(routes_info.router)
    _add_error_handlers(app)
    return ApiKeyGuard(BodyLimit(app, config.max_body_bytes), config.api_key)


def _add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, APIError)
    routes_generate.count_error(request, exc)
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    routes_generate.count_error(request, None)
    message, param = describe_validation(exc.errors())
    return JSONResponse(error_body(message, INVALID_REQUEST, param), status_code=400)


def describe_validation(errors: Any) -> tuple[str, str | None]:
    """One message and the offending parameter for the first validation error."""
    first = next(iter(errors), None)
    if first is None:
        return "Invalid request", None
    if first.get("type") == "json_invalid":
        return "The request body is not valid JSON", None
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(location) or None
    where = f" ({param})" if param else ""
    return f"Invalid request{where}: {first.get('msg', 'invalid value')}", param


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    type_ = NOT_FOUND if exc.status_code == 404 else INVALID_REQUEST
    return JSONResponse(error_body(str(exc.detail), type_), status_code=exc.status_code,
                        headers=exc.headers)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    LOG.error("unexpected error", exc_info=exc)
    routes_generate.count_error(request, APIError(500, "internal server error", SERVER))
    return JSONResponse(error_body("internal server error", SERVER), status_code=500)
