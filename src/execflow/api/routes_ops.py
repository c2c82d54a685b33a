"""Operator reads for the ops console (admin scope): health, queues, LP quality, a trail.

What ``execflow logs trace``, ``lp quality`` and ``/readyz`` tell, as JSON for the
console (``/console``) and for any other tool. They read only: the console's actions go
through the operator endpoints (``routes_operator``: DLQ replay, resolution).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from execflow.api import ops
from execflow.api.auth import context, require, visible
from execflow.api.keys import ApiKey, Scope
from execflow.api.queries import order_account
from execflow.api.routes_orders import PROBLEMS, OrderId
from execflow.pipeline.stuck import find_stuck

__all__ = ["router"]

router = APIRouter(prefix="/v1/admin", tags=["operator"])

Admin = Annotated[ApiKey, Depends(require(Scope.ADMIN))]
_TRACE_MAX_LINES = 5000


class ComponentOut(BaseModel):
    """One component: is its queue consumed, and what this process's metrics say of it."""

    component: str
    queue: str | None = Field(None, description="the queue it consumes")
    up: bool | None = Field(None, description="its queue has a consumer (null: no queue tells)")
    consumers: int | None = None
    depth: int | None = Field(None, description="messages waiting in its queue")
    outcomes: dict[str, int] = Field(
        default_factory=dict, description="handled messages by outcome (workers)"
    )
    success_rate: float | None = Field(None, description="successes / counted outcomes")
    processed: int = Field(0, description="messages timed")
    mean_ms: float | None = None
    p50_ms: float | None = Field(None, description="at most (the histogram bucket's bound)")
    p95_ms: float | None = None
    p99_ms: float | None = None


class HealthOut(BaseModel):
    """Readiness, each component, dead letters and stuck orders, as this process sees them."""

    status: str = Field(description="`ready` or `not_ready` (as /readyz)")
    checks: dict[str, bool | str]
    metrics: bool = Field(description="false: this process keeps no metrics registry")
    components: list[ComponentOut]
    dead_lettered: dict[str, int] = Field(description="dead letters by reason since start")
    stuck_orders: int = Field(description="stuck orders of the key's accounts now")


class QueueOut(BaseModel):
    """A queue as the broker reports it now."""

    queue: str
    component: str = Field(description="who consumes it")
    depth: int | None = None
    consumers: int | None = None
    error: str | None = Field(None, description="the error type when the broker did not answer")


class LatencyOut(BaseModel):
    """A latency distribution in milliseconds (nearest-rank percentiles)."""

    count: int
    mean_ms: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None


class SlippageOut(BaseModel):
    """Slippage of filled orders; positive is in the client's favour (decimal strings)."""

    count: int
    favourable: int
    zero: int
    adverse: int
    mean_pips: str | None = None
    min_pips: str | None = None
    max_pips: str | None = None
    total_usd: str
    mean_usd: str | None = None


class LpQualityOut(BaseModel):
    """One LP's execution quality (as ``execflow lp quality --json``)."""

    lp: str
    requests: int
    requests_by_kind: dict[str, int]
    answered: int
    first_report: LatencyOut
    market_orders: int
    lots_requested: str
    lots_filled: str
    fill_ratio: str | None = None
    fill: LatencyOut
    rejected: int
    reject_ratio: str | None = None
    rejects_by_reason: dict[str, int]
    slippage: SlippageOut
    first_sent_at: datetime | None = None
    last_sent_at: datetime | None = None


class LpQualityPage(BaseModel):
    """Every LP's quality over the records sent since ``since``."""

    since: datetime | None = None
    lp: str | None = None
    lps: list[LpQualityOut]


class TraceLineOut(BaseModel):
    """One log line about the order."""

    file: str
    ts: str
    level: str
    logger: str
    component: str
    tag: str
    fields: dict[str, Any]


class TraceOut(BaseModel):
    """Every log line about an order, from every file, in time order (``logs trace``)."""

    order_id: str
    trace_ids: list[str]
    files_scanned: int
    truncated: bool = Field(description=f"more than {_TRACE_MAX_LINES} lines: the first shown")
    lines: list[TraceLineOut]


@router.get("/health", response_model=HealthOut, responses=PROBLEMS, summary="Pipeline health")
async def ops_health(request: Request, key: Admin) -> HealthOut:
    """Readiness checks, each component's queue and metrics, dead letters, stuck orders."""
    ctx = context(request)
    services = ctx.services
    checks = await ops.readiness_checks(ctx)
    queues = await ops.queue_states(services)
    figures = ops.registry_figures(services)
    components = []
    for row in ops.component_health(queues, figures):
        f = row.figures
        components.append(
            ComponentOut(
                component=row.component,
                queue=row.queue,
                up=row.up,
                consumers=row.consumers,
                depth=row.depth,
                outcomes={} if f is None else f.outcomes,
                success_rate=None if f is None else f.success_rate,
                processed=0 if f is None else f.processed,
                mean_ms=None if f is None else f.mean_ms,
                **({} if f is None else f.percentiles_ms),
            )
        )
    stuck = await find_stuck(services.state, services.clock.now(), services.settings.stuck_after_s)
    return HealthOut(
        status="ready" if all(v is True for v in checks.values()) else "not_ready",
        checks=checks,
        metrics=figures is not None,
        components=components,
        dead_lettered={} if figures is None else figures.dead_lettered,
        stuck_orders=sum(1 for s in stuck if key.may_see(s.account_id)),
    )


@router.get("/queues", response_model=list[QueueOut], responses=PROBLEMS, summary="Queue depths")
async def list_queues(request: Request, key: Admin) -> list[QueueOut]:
    """Messages waiting and consumers attached, per pipeline queue (the broker's view)."""
    del key
    states = await ops.queue_states(context(request).services)
    return [QueueOut(**_fields(s)) for s in states]


def _fields(state: ops.QueueState) -> dict[str, Any]:
    return {
        "queue": state.queue,
        "component": state.component,
        "depth": state.depth,
        "consumers": state.consumers,
        "error": state.error,
    }


@router.get(
    "/lp-quality",
    response_model=LpQualityPage,
    responses=PROBLEMS,
    summary="Per-LP execution quality",
)
async def lp_quality(
    request: Request,
    key: Admin,
    since: Annotated[
        datetime | None, Query(description="requests sent from this time (UTC if naive)")
    ] = None,
    lp: Annotated[str | None, Query(max_length=32, pattern=r"^[A-Za-z][A-Za-z0-9_]*$")] = None,
) -> LpQualityPage:
    """Latency to first report and fill, slippage, fill ratio, rejects by reason, per LP."""
    del key
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    qualities = await ops.lp_quality(context(request).services, since, lp)
    return LpQualityPage(since=since, lp=lp, lps=[LpQualityOut(**q.to_dict()) for q in qualities])


@router.get(
    "/orders/{order_id}/trace",
    response_model=TraceOut,
    responses=PROBLEMS,
    summary="An order's trail through the logs",
)
async def order_trace(order_id: OrderId, request: Request, key: Admin) -> TraceOut:
    """Every line about the order in the process's log directory (rotated, gzipped too)."""
    services = context(request).services
    visible(key, await order_account(services, order_id), "order", order_id)
    result = await ops.trace_lines(services, order_id)
    shown = result.records[:_TRACE_MAX_LINES]
    return TraceOut(
        order_id=order_id,
        trace_ids=result.trace_ids,
        files_scanned=result.files_scanned,
        truncated=len(result.records) > len(shown),
        lines=[
            TraceLineOut(
                file=r.file,
                ts=r.ts,
                level=r.level,
                logger=r.logger,
                component=r.component,
                tag=r.tag,
                fields=r.fields,
            )
            for r in shown
        ],
    )
