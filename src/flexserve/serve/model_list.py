"""``/v1/models``: the servable models, with what the device holds of each.

Only the names :func:`servable_models` lists can be requested over HTTP (never a file path: a
remote client must not make the server open arbitrary files). Each model object carries the
``flexserve`` extension from the worker's last status: ``loaded`` (a session has it open),
``resident_bytes`` (weights the Flex-Mem cache keeps) and ``sealed`` (its blob is in the store).
"""

from __future__ import annotations

from typing import Any

from flexserve.serve.protocol import ModelState, WorkerStatus


def servable_names() -> list[str]:
    from flexserve.catalog.servable import servable_models

    return servable_models()


def model_objects(status: WorkerStatus, created: int) -> list[dict[str, Any]]:
    known = {model.name: model for model in status.models}
    return [model_object(name, known.get(name), created) for name in servable_names()]


def model_object(name: str, state: ModelState | None, created: int) -> dict[str, Any]:
    return {
        "id": name,
        "object": "model",
        "created": created,
        "owned_by": "flexserve",
        "flexserve": {
            "loaded": state.loaded if state else False,
            "resident_bytes": state.resident_bytes if state else 0,
            "sealed": state.sealed if state else False,
        },
    }
