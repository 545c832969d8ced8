"""``GET /v1/models``, ``GET /v1/models/{id}``, ``GET /health`` and ``GET /metrics``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from flexserve.serve.api_errors import model_not_found
from flexserve.serve.metrics import CONTENT_TYPE
from flexserve.serve.model_list import model_objects
from flexserve.serve.protocol import WorkerState
from flexserve.serve.state import ServerState

router = APIRouter()


def _state(request: Request) -> ServerState:
    return request.app.state.flexserve


@router.get("/v1/models", tags=["openai"])
async def list_models(request: Request) -> dict[str, Any]:
    state = _state(request)
    return {"object": "list",
            "data": model_objects(state.worker.status(), state.started_at)}


@router.get("/v1/models/{model_id:path}", tags=["openai"])
async def get_model(model_id: str, request: Request) -> dict[str, Any]:
    state = _state(request)
    for model in model_objects(state.worker.status(), state.started_at):
        if model["id"] == model_id:
            return model
    raise model_not_found(model_id)


@router.get("/health", tags=["server"])
async def health(request: Request) -> JSONResponse:
    """200 once the device is ready; 503 while it boots, loads a model or restarts."""
    state = _state(request)
    status = state.worker.status()
    body = {
        "status": status.state.value,
        "worker": {"pid": getattr(state.worker, "pid", None), "state": status.state.value,
                   "restarts": status.restarts, "running": status.running,
                   "queued": status.queued},
        "server": {"waiting": state.admission.waiting, "running": state.admission.running,
                   "max_queue": state.admission.max_queue},
    }
    return JSONResponse(body, status_code=200 if status.state is WorkerState.READY else 503)


@router.get("/metrics", tags=["server"])
async def metrics(request: Request) -> Response:
    return Response(_state(request).metrics.render(), media_type=CONTENT_TYPE)
