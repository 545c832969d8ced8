"""schemathesis against the server's own OpenAPI document: no generated request gets a 5xx.

Positive (schema-valid) and negative (schema-violating) cases for every operation, a few dozen
each. Generation stays cheap: a valid ``max_tokens`` is capped at 2 (and set when absent), and
half the bodies name the served model so the device really runs them.
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

pytestmark = pytest.mark.slow

EXAMPLES_PER_OPERATION = 24
TOKEN_CAP = 2


def _cheap(body: object, model: str, use_model: bool) -> None:
    if not isinstance(body, dict):
        return
    if use_model and "model" in body:
        body["model"] = model
    for field in ("max_tokens", "max_completion_tokens"):
        value = body.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and value > TOKEN_CAP:
            body[field] = TOKEN_CAP
    body.setdefault("max_tokens", TOKEN_CAP)


def _operations(base_url: str):
    schema = schemathesis.openapi.from_url(base_url + "/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors(ready, mode) -> None:
    headers = {"Authorization": f"Bearer {ready.api_key}"}
    operations = _operations(ready.base_url)
    assert {op.path for op in operations} >= {"/v1/chat/completions", "/v1/completions",
                                              "/v1/models", "/health", "/metrics"}
    failures: list[str] = []
    calls: dict[str, int] = {}
    for operation in operations:
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode), use_model=st.booleans())
        def run(case, use_model: bool) -> None:
            _cheap(case.body, ready.model, use_model)
            calls[case.operation.label] = calls.get(case.operation.label, 0) + 1
            response = case.call(base_url=ready.base_url, headers=headers, timeout=120)
            if response.status_code >= 500 and response.status_code != 503:
                label = case.operation.label
                failures.append(f"{label}: {response.status_code} {case.body!r:.300}")

        try:
            run()
        except Unsatisfiable:  # nothing to violate (no parameters): no negative cases
            assert mode is GenerationMode.NEGATIVE
    assert failures == []
    for path in ("/v1/chat/completions", "/v1/completions"):
        assert calls[f"POST {path}"] >= EXAMPLES_PER_OPERATION // 2
    assert ready.health()[0] == 200
