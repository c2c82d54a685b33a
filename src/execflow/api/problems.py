"""RFC 9457 problem details: every refusal of the API, one shape, one media type.

``type`` is ``urn:execflow:problem:<code>`` and ``code`` the same snake_case reason the
intake gives (``insufficient_margin``, ``unknown_symbol``, ...), so a client branches on
one stable string whichever layer refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from fastapi.responses import Response

__all__ = [
    "PROBLEM_JSON",
    "intake_status",
    "problem_body",
    "problem_response",
    "validation_errors",
]

PROBLEM_JSON = "application/problem+json"
_TYPE = "urn:execflow:problem:"

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}

# intake refusals that are about the order's current state, not the request's content
_CONFLICTS = frozenset({"not_open", "not_pending", "leg_live", "leg_not_live", "busy"})
_NOT_FOUND = frozenset({"unknown_order", "unknown_account"})


def intake_status(reason: str) -> int:
    """The HTTP status of an intake refusal: 404 unknown, 409 state, else 422."""
    if reason in _NOT_FOUND:
        return 404
    if reason in _CONFLICTS:
        return 409
    return 422


def problem_body(
    status: int,
    code: str,
    detail: str = "",
    instance: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The problem document as a dict."""
    body: dict[str, Any] = {
        "type": _TYPE + code,
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "code": code,
    }
    if detail:
        body["detail"] = detail
    if instance is not None:
        body["instance"] = instance
    if extra:
        body.update(extra)
    return body


def problem_response(
    status: int,
    code: str,
    detail: str = "",
    *,
    instance: str | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Response:
    """A ready ``application/problem+json`` response."""
    body = problem_body(status, code, detail, instance, extra)
    return Response(
        orjson.dumps(body), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


def validation_errors(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """pydantic's errors as ``{field, message}``: the field is a dotted path (``body.qty``)."""
    out = []
    for err in errors:
        field = ".".join(str(part) for part in err.get("loc", ()))
        out.append({"field": field, "message": str(err.get("msg", "invalid"))})
    return out
