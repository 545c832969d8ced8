"""``POST /v1/chat/completions`` and ``POST /v1/completions``: admission, the worker, the answer.

Both endpoints turn their body into a :class:`WorkRequest`, take a place in the bounded queue
and wait for the device to accept the prompt. Errors up to that point are plain HTTP errors;
after it a streaming answer reports a failure as an ``error`` event. A client that goes away,
or stops reading for ``send_timeout_s``, has its request cancelled in the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from flexserve.serve.admission import Ticket
from flexserve.serve.api_errors import APIError, device_unavailable, model_not_found
from flexserve.serve.api_schema import ChatCompletionRequest, CompletionRequest
from flexserve.serve.generation import Generation, StreamFailed
from flexserve.serve.model_list import servable_names
from flexserve.serve.protocol import ChatMessage, WorkerState, WorkRequest
from flexserve.serve.responses import Kind, ResponseShape, new_request_id
from flexserve.serve.sse import DONE, EventStreamResponse, StreamEnd, until_disconnect
from flexserve.serve.state import ServerState

T = TypeVar("T")
CLIENT_CLOSED_REQUEST = 499  # nobody reads it: the client has gone

router = APIRouter()


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


@dataclass
class Job:
    """One generation request as the route built it."""

    endpoint: str
    shape: ResponseShape
    work: WorkRequest
    stream: bool
    include_usage: bool
    echo_text: str = ""


@router.post("/v1/chat/completions", tags=["openai"])
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
    kind: Kind = "chat"
    request_id = new_request_id(kind)
    state: ServerState = request.app.state.flexserve
    messages = tuple(ChatMessage("system" if m.role == "developer" else m.role, m.text())
                     for m in body.messages)
    work = WorkRequest(request_id, body.model, messages=messages,
                       sampling=body.sampling(state.config.default_max_tokens))
    job = Job("chat", ResponseShape(kind, request_id, body.model), work, body.stream,
              body.include_usage())
    return await serve(state, request, job)


@router.post("/v1/completions", tags=["openai"])
async def completions(body: CompletionRequest, request: Request) -> Any:
    kind: Kind = "completion"
    request_id = new_request_id(kind)
    state: ServerState = request.app.state.flexserve
    prompt = body.prompt_text()
    work = WorkRequest(request_id, body.model, prompt=prompt,
                       sampling=body.sampling(state.config.default_max_tokens))
    job = Job("completions", ResponseShape(kind, request_id, body.model), work, body.stream,
              body.include_usage(), prompt if body.echo else "")
    return await serve(state, request, job)


ENDPOINTS = {"/v1/chat/completions": "chat", "/v1/completions": "completions"}


def count_error(request: Request, error: APIError | None) -> None:
    """Count a generation request answered with an error (None: invalid body, a 400)."""
    endpoint = ENDPOINTS.get(request.url.path)
    if endpoint is not None:
        outcome = "client_error" if error is None else _error_outcome(error)
        request.app.state.flexserve.metrics.count(endpoint, outcome)


async def serve(state: ServerState, request: Request, job: Job) -> Response:
    """Run ``job``; count how it ended unless a stream will count it when it ends (errors are
    counted by the app's error handlers, which also see invalid bodies)."""
    try:
        response = await _serve(state, request, job)
    except ClientGone:
        state.metrics.count(job.endpoint, "cancelled")
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    if not job.stream:
        state.metrics.count(job.endpoint, "ok")
    return response


def _error_outcome(error: APIError) -> str:
    if error.code in ("server_overloaded", "device_unavailable"):
        return "rejected"
    return "client_error" if error.status < 500 else "server_error"


async def _serve(state: ServerState, request: Request, job: Job) -> Response:
    if job.work.model not in servable_names():
        raise model_not_found(job.work.model)
    if state.worker.status().state in (WorkerState.RESTARTING, WorkerState.STOPPED):
        raise device_unavailable(state.admission.retry_after_s)
    ticket = state.admission.admit()
    generation = Generation(state.worker, job.work, state.metrics, state.config.pace)
    handed_to_stream = False
    try:
        await _unless_gone(request, generation.start())
        state.admission.start(ticket)
        if job.stream:
            handed_to_stream = True
            return _stream(state, job, generation, ticket)
        text = await _unless_gone(request, generation.text())
    except StreamFailed as failed:
        raise failed.error from None
    finally:
        if not handed_to_stream:
            state.admission.release(ticket)
            await generation.close()
    state.metrics.duration_s.labels(endpoint=job.endpoint).observe(
        generation.extension()["host"]["total_s"])
    assert generation.finished is not None
    return JSONResponse(job.shape.whole(job.echo_text + text, generation.finished,
                                        generation.extension()))


async def _unless_gone(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``; raise ClientGone (cancelling it) if the client disconnects first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(until_disconnect(request.receive))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
        for pending in (task, watcher):
            with contextlib.suppress(asyncio.CancelledError):
                await pending
    if task.cancelled():
        raise ClientGone
    return task.result()


def _stream(state: ServerState, job: Job, generation: Generation, ticket: Ticket) -> Response:
    failed = False

    async def events() -> AsyncIterator[dict[str, Any] | str]:
        nonlocal failed
        async for payload in _chunks(job, generation):
            if "error" in payload:
                failed = True
            yield payload

    async def on_end(end: StreamEnd) -> None:
        state.admission.release(ticket)
        await generation.close()
        outcome = {StreamEnd.COMPLETE: "server_error" if failed else "ok",
                   StreamEnd.DISCONNECTED: "cancelled",
                   StreamEnd.SEND_TIMEOUT: "send_timeout"}[end]
        state.metrics.count(job.endpoint, outcome)
        state.metrics.duration_s.labels(endpoint=job.endpoint).observe(
            generation.extension()["host"]["total_s"])

    return EventStreamResponse(events(), state.config.send_timeout_s, on_end)


async def _chunks(job: Job, generation: Generation) -> AsyncIterator[dict[str, Any] | str]:
    shape = job.shape
    if shape.kind == "chat":
        yield shape.chunk("", first=True)
    if job.echo_text:
        yield shape.chunk(job.echo_text)
    try:
        async for delta in generation.deltas():
            if delta.text:
                yield shape.chunk(delta.text)
    except StreamFailed as failed:
        yield failed.error.body()
        yield DONE
        return
    finished = generation.finished
    assert finished is not None
    final = shape.chunk("", finished.finish_reason)
    if job.include_usage:
        yield final
        final = shape.usage_chunk(finished)
    final["flexserve"] = generation.extension()
    yield final
    yield DONE
