"""Operator endpoints (admin scope): the DLQ, stuck orders and their resolution.

They run what the CLI runs (``execflow dlq``, ``orders stuck``, ``order resolve``) in
this process. An admin key sees the whole DLQ (dead letters belong to no account yet);
stuck orders and resolutions stay within the key's accounts like every other route. A
resolution is recorded with ``api:<key name>:<key id>`` as the operator.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from execflow.api.auth import context, require, visible
from execflow.api.calls import Outcome, answer_of, mutate
from execflow.api.idempotency import Answer
from execflow.api.keys import ApiKey, Scope
from execflow.api.queries import order_account
from execflow.api.routes_orders import PROBLEMS, IdempotencyKey, OrderId
from execflow.api.schemas import DecimalText
from execflow.domain.enums import LegKind
from execflow.domain.resolution import OperatorNote, Resolution
from execflow.errors import ApiError
from execflow.pipeline.dlq import list_dead_letters, replay_dead_letters
from execflow.pipeline.resolve import Refused, resolve_order
from execflow.pipeline.stuck import find_stuck

__all__ = ["router"]

router = APIRouter(prefix="/v1/admin", tags=["operator"])

Admin = Annotated[ApiKey, Depends(require(Scope.ADMIN))]
_COMPONENT = "supervisor"


class DeadLetterOut(BaseModel):
    """A dead letter as ``execflow dlq list`` shows it."""

    id: int
    reason: str
    queue: str
    order: str | None = None
    trace_id: str | None = None
    attempts: int
    error: str | None = None
    created_at: datetime
    age_s: float
    replayed_at: datetime | None = None


class ReplayIn(BaseModel):
    """Which dead letters to replay."""

    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, max_length=128, description="only this DLQ reason")
    dry_run: bool = False
    limit: int = Field(1000, ge=1, le=10_000)


class ReplayOut(BaseModel):
    """What a replay did (or would do)."""

    selected: list[DeadLetterOut]
    replayed: int
    dry_run: bool


class StuckOut(BaseModel):
    """An order whose request to the LP is unanswered and that has been silent too long."""

    order_id: str
    account_id: str
    symbol: str
    side: str
    status: str
    waiting_for: list[str]
    lifecycle_ids: list[str]
    updated_at: datetime
    silent_s: float
    reserved_margin: str


class ResolveIn(BaseModel):
    """What became of the unanswered request, and why (as ``execflow order resolve``)."""

    model_config = ConfigDict(extra="forbid")

    resolution: Literal["cancelled", "rejected", "filled"] = Field(alias="as")
    reason: str = Field(min_length=1, max_length=500)
    price: DecimalText | None = Field(None, description="the fill price, for `filled`")
    leg: Literal["sl", "tp"] | None = None


class ResolveOut(BaseModel):
    """The applied resolution."""

    order_id: str
    exec_id: str
    trace_id: str
    worker: str
    kind: str
    status_before: str
    status: str
    operator: str


@router.get(
    "/dlq", response_model=list[DeadLetterOut], responses=PROBLEMS, summary="List dead letters"
)
async def dlq_list(
    request: Request,
    key: Admin,
    reason: Annotated[str | None, Query(max_length=128)] = None,
    include_replayed: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DeadLetterOut]:
    """Moves the DLQ into the table first, as ``execflow dlq list`` does."""
    del key
    services = context(request).services
    views = await list_dead_letters(
        services.bus,
        services.database,
        services.logger(_COMPONENT),
        services.clock.now(),
        reason=reason,
        include_replayed=include_replayed,
        limit=limit,
    )
    return [DeadLetterOut(**v.to_dict()) for v in views]


@router.post(
    "/dlq/replay",
    response_model=ReplayOut,
    responses=PROBLEMS,
    summary="Replay dead letters to their original queues",
)
async def dlq_replay(
    body: ReplayIn, request: Request, key: Admin, idempotency_key: IdempotencyKey
) -> Response:
    """Re-publish the stored dead letters (of ``reason``) and mark them replayed."""
    ctx = context(request)
    services = ctx.services

    async def call(outcome: Outcome) -> Answer:
        del outcome
        result = await replay_dead_letters(
            services.bus,
            services.database,
            services.logger(_COMPONENT),
            services.clock.now(),
            reason=body.reason,
            dry_run=body.dry_run,
            limit=body.limit,
        )
        out = ReplayOut(
            selected=[DeadLetterOut(**v.to_dict()) for v in result.selected],
            replayed=result.replayed,
            dry_run=result.dry_run,
        )
        return answer_of(200, out)

    return await mutate(request, ctx, key, idempotency_key, "dlq_replay", body, call)


@router.get(
    "/stuck", response_model=list[StuckOut], responses=PROBLEMS, summary="List stuck orders"
)
async def stuck_list(
    request: Request,
    key: Admin,
    older_than_s: Annotated[float | None, Query(ge=0, le=10**9)] = None,
) -> list[StuckOut]:
    """Orders of the key's accounts silent for ``older_than_s`` (default: the setting)."""
    services = context(request).services
    after_s = services.settings.stuck_after_s if older_than_s is None else older_than_s
    found = await find_stuck(services.state, services.clock.now(), after_s)
    return [StuckOut(**s.to_dict()) for s in found if key.may_see(s.account_id)]


@router.post(
    "/orders/{order_id}/resolve",
    response_model=ResolveOut,
    responses=PROBLEMS,
    summary="Resolve a stuck order as the LP would have answered",
)
async def resolve(
    order_id: OrderId,
    body: ResolveIn,
    request: Request,
    key: Admin,
    idempotency_key: IdempotencyKey,
) -> Response:
    """The same transitions a report would run (margin released, DB events written)."""
    ctx = context(request)
    operator = f"api:{key.name}:{key.key_id}"

    async def call(outcome: Outcome) -> Answer:
        outcome.order_id = order_id
        account_id = await order_account(ctx.services, order_id)
        outcome.account_id = visible(key, account_id, "order", order_id)
        note = OperatorNote(operator, body.reason, Resolution(body.resolution))
        result = await resolve_order(
            ctx.services,
            order_id,
            note,
            price=None if body.price is None else Decimal(body.price),
            leg=None if body.leg is None else LegKind(body.leg.upper()),
        )
        if isinstance(result, Refused):
            status = 404 if result.reason == "unknown_order" else 409
            raise ApiError(status, result.reason, result.detail or result.reason)
        out = ResolveOut(
            order_id=result.order_id,
            exec_id=result.exec_id,
            trace_id=result.trace_id,
            worker=result.worker,
            kind=result.kind,
            status_before=result.status_before,
            status=result.status,
            operator=operator,
        )
        return answer_of(200, out)

    return await mutate(request, ctx, key, idempotency_key, "resolve_order", body, call)
