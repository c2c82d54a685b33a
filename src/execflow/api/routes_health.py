"""``/healthz``, ``/readyz``, ``/metrics``: for the load balancer and Prometheus (no key).

``/healthz`` says the process answers. ``/readyz`` says it can serve: the state store,
the database and the broker answer, and the state store was rebuilt (or found whole)
before the API started. Both carry no account data, so they need no key; bind the API
to localhost or keep them behind the reverse proxy.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from execflow.api.auth import context
from execflow.api.ops import readiness_checks

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process answers")
async def healthz() -> dict[str, str]:
    """Always ``{"status": "ok"}`` while the process runs."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Servers reachable and state rebuilt",
    responses={503: {"description": "Not ready: `checks` names what failed"}},
)
async def readyz(request: Request) -> JSONResponse:
    """200 when every check passes, else 503 with the failing ones."""
    checks = await readiness_checks(context(request))
    ready = all(value is True for value in checks.values())
    body = {"status": "ready" if ready else "not_ready", "checks": checks}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """The text exposition of this process's metrics."""
    found = context(request).services.metrics
    payload = b"" if found is None else found.exposition()
    return Response(payload, media_type=CONTENT_TYPE_LATEST)
