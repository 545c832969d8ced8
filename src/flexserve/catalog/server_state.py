"""What a running FlexServe server says of its models: ``GET <url>/v1/models``.

The reply is OpenAI's list format; each model object may carry FlexServe's extension
``"flexserve": {"loaded": bool, "resident_bytes": int, "sealed": bool}`` (the model has an
open session on the device; how many weight bytes stay resident in Flex-Mem; a sealed blob
exists in the server's store).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flexserve.errors import ConfigError

DEFAULT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class ServedModel:
    name: str
    loaded: bool
    resident_bytes: int
    sealed: bool


def _served(item: Any) -> ServedModel:
    if not isinstance(item, dict) or not isinstance(item.get("id"), str):
        raise ValueError("a model object without a string id")
    ext = item.get("flexserve") or {}
    if not isinstance(ext, dict):
        raise ValueError(f"the flexserve extension of {item['id']!r} is not an object")
    resident = ext.get("resident_bytes", 0)
    if isinstance(resident, bool) or not isinstance(resident, int) or resident < 0:
        raise ValueError(f"resident_bytes of {item['id']!r} is not a byte count")
    return ServedModel(item["id"], ext.get("loaded") is True, resident, ext.get("sealed") is True)


def parse_models_reply(document: Any) -> dict[str, ServedModel]:
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise ValueError("not an OpenAI model list (no 'data' array)")
    return {model.name: model for model in map(_served, document["data"])}


def fetch_served_models(url: str, api_key: str | None = None,
                        timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, ServedModel]:
    """The server's models by name; a one-line ConfigError if it cannot be asked."""
    import httpx

    endpoint = url.rstrip("/") + "/v1/models"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        reply = httpx.get(endpoint, headers=headers, timeout=timeout_s)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise ConfigError(f"cannot reach the server at {endpoint}: {exc}") from exc
    if reply.status_code in (401, 403):
        raise ConfigError(f"the server at {endpoint} refused the request "
                          f"(HTTP {reply.status_code}): check --api-key")
    if reply.status_code != 200:
        raise ConfigError(f"the server at {endpoint} answered HTTP {reply.status_code}")
    try:
        return parse_models_reply(reply.json())
    except ValueError as exc:
        raise ConfigError(f"the server at {endpoint} sent a bad model list: {exc}") from exc
