"""schemathesis against the live API, from the API's own OpenAPI document.

Every operation (the endless stream aside) with generated data, valid and invalid, and
the stateful phase along the document's links (place an order -> read it, its events,
cancel or close it): never a server error, and every answer (status, content type,
headers, body) as the document describes it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api.live import Live, live_api

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
SETTINGS = hypothesis.settings(
    max_examples=10,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    # no rate limit in the way of the generated calls
    with live_api(tmp_path_factory.mktemp("live"), api_rate_per_s=10_000.0) as running:
        yield running


@pytest.fixture(scope="module")
def api_schema(live: Live) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{live.base}/openapi.json").exclude(path="/v1/stream")


def _fuzz(operation: Any, mode: GenerationMode, live: Live, seen: set[int]) -> Any:
    """A hypothesis test of one operation in one generation mode."""

    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    @SETTINGS
    def run(case: Case[Any]) -> None:
        response = case.call_and_validate(base_url=live.base, headers=live.headers, checks=CHECKS)
        seen.add(response.status_code)

    return run


def test_every_operation_answers_as_documented(
    api_schema: schemathesis.BaseSchema, live: Live
) -> None:
    tested = []
    statuses: dict[str, set[int]] = {}
    for result in api_schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run = _fuzz(operation, mode, live, statuses.setdefault(operation.label, set()))
            try:
                run()
            except hypothesis.errors.Unsatisfiable:
                # nothing to get wrong: an operation without parameters or body
                assert mode is GenerationMode.NEGATIVE, operation.label
        tested.append(operation.label)
    assert len(tested) == 27  # every operation of the document but the stream
    # the key was accepted (not every answer a 401): generated calls reached the routes
    assert 200 in statuses["GET /v1/orders"] and 201 in statuses["POST /v1/admin/api-keys"]
    assert {404, 422} <= statuses["POST /v1/orders"]


def test_stateful_links_from_a_placed_order(
    api_schema: schemathesis.BaseSchema, live: Live
) -> None:
    machine = api_schema.as_state_machine()
    seen: Counter[tuple[str, int]] = Counter()

    class Links(machine):  # type: ignore[misc, valid-type]
        def before_call(self, case: Case[Any]) -> None:
            # random accounts and symbols never exist: place real orders, so the links
            # from place_order (read it, its events, cancel, close) reach a real order
            if case.operation.label == "POST /v1/orders" and isinstance(case.body, dict):
                case.body.update(account_id="live:1", symbol="EURUSD", type="MARKET")
                case.body.update(qty="0.10", price=None, sl=None, tp=None)

        def get_call_kwargs(self, case: Case[Any]) -> dict[str, object]:
            return {"base_url": live.base, "headers": live.headers}

        def validate_response(self, response: Any, case: Case[Any], **kwargs: object) -> None:
            seen[(case.operation.label, response.status_code)] += 1
            case.validate_response(response, checks=CHECKS)

    Links.run(
        settings=hypothesis.settings(
            max_examples=15,
            stateful_step_count=6,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
    )
    assert seen[("POST /v1/orders", 201)] > 0
    followed = sum(
        n for (label, status), n in seen.items() if status == 200 and "{order_id}" in label
    )
    assert followed > 0, seen  # a link from a placed order reached it
