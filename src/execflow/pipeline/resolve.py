"""``execflow order resolve``: an operator answers a stuck order's request in the LP's place.

The resolution runs the path a report takes after the dispatcher, nothing else:

1. the order is read from the state store; the pure ``plan_resolution`` picks its
   unanswered request and builds the report the LP would have sent (exec_id
   ``operator:<id>``, ``provider="operator"``, the operator's reason as Text);
2. the dispatcher's routing table names the worker, as for an LP report;
3. ``transact`` runs that worker's transition and commits it (compare-and-set, the
   exec_id into the ledger, the effects into the outbox); the DB events carry
   ``payload["operator"]`` (who, why, as what);
4. ``publish_effects`` sends the DB events to the db writer and any follow-up LP
   request (an SL/TP placed once a fill opened the position), as a worker does.

Anything the transition does not apply (a fill that would overfill, a partially filled
order said to be rejected, a missing conversion rate, an order that moved on meanwhile)
is refused and nothing is written. Lines go to ``supervisor.log`` (the admin commands'
file): ``RESOLVE:SUCCESS`` with the worker's own fields plus ``operator`` and ``reason``,
or ``RESOLVE:REFUSED``; calculations to ``orders_calculated.log`` as the worker writes them.

If publishing fails after the commit, ``resolve_order`` raises and the exec_id is in the
error: running it again with that ``exec_id`` re-publishes the recorded effects (the
ledger makes the second run a duplicate, never a second transition). An ``exec_id``
the order has not applied, or not an operator's, is refused: it is never used for a
new resolution, where it could shadow an LP report's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from execflow.domain.codec import calculation_to_dict, order_from_dict
from execflow.domain.enums import LegKind
from execflow.domain.models import LifecycleRecord, Order
from execflow.domain.outcomes import Applied, Duplicate
from execflow.domain.resolution import (
    OPERATOR_PROVIDER,
    OperatorNote,
    Plan,
    Refusal,
    operator_exec_id,
    plan_resolution,
    with_note,
)
from execflow.logs.context import log_context
from execflow.logs.events import EventLogger
from execflow.pipeline.effects import publish_effects
from execflow.pipeline.services import Services
from execflow.pipeline.transact import transact
from execflow.pipeline.worker_specs import WORKER_SPECS, Change, base_fields

__all__ = ["COMPONENT", "TAG", "Refused", "Resolved", "resolve_order"]

COMPONENT = "supervisor"
TAG = "RESOLVE"


@dataclass(frozen=True, slots=True)
class Resolved:
    """The resolution was applied (or, for a known exec_id, its effects re-published)."""

    order_id: str
    exec_id: str
    trace_id: str
    worker: str
    kind: str
    status_before: str
    status: str
    republished: bool = False
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Refused:
    """Nothing was changed, and why."""

    order_id: str
    reason: str
    detail: str = ""
    status: str | None = None


async def resolve_order(
    services: Services,
    order_id: str,
    note: OperatorNote,
    *,
    price: Decimal | None = None,
    leg: LegKind | None = None,
    exec_id: str | None = None,
) -> Resolved | Refused:
    """Answer the order's unanswered request as ``note`` says (see the module docstring)."""
    log = services.logger(COMPONENT)
    trace_id = services.ids.new_id()
    who: dict[str, Any] = {
        "operator": note.operator,
        "reason": note.reason,
        "resolution": note.resolution.value,
    }
    with log_context(trace_id=trace_id, order_id=order_id):
        asked = {"price": price, "leg": leg.value if leg else None}
        log.info(f"{TAG}:RECEIVED", **who, **{k: v for k, v in asked.items() if v is not None})
        order = await _load(services, order_id)
        if order is None:
            return _refuse(log, Refused(order_id, "unknown_order", "not in the state store"), who)
        if exec_id is not None:
            # only a re-send: an exec_id of the operator's choosing could shadow the LP's
            if not order.has_applied(exec_id) or not exec_id.startswith(OPERATOR_PROVIDER):
                detail = "--exec-id only re-sends a resolution this order has applied"
                return _refuse(log, Refused(order_id, "exec_id_unknown", detail), who)
            return await _republish(services, log, order, exec_id, trace_id, who)
        exec_id = operator_exec_id(services.ids.new_id())
        plan = plan_resolution(order, note, exec_id, services.clock.now(), price=price, leg=leg)
        if isinstance(plan, Refusal):
            refused = Refused(order_id, plan.reason, plan.detail, order.status.value)
            return _refuse(log, refused, who)
        return await _apply(services, log, order, plan, note, trace_id, who)


async def _apply(
    services: Services,
    log: EventLogger,
    order: Order,
    plan: Plan,
    note: OperatorNote,
    trace_id: str,
    who: dict[str, Any],
) -> Resolved | Refused:
    spec = WORKER_SPECS[plan.worker]
    request = plan.request
    lifecycle = LifecycleRecord(
        request.lifecycle_id, order.account_id, order.order_id, request.kind
    )
    done = await transact(
        services, plan.worker, lifecycle, plan.report, log, TAG, amend=lambda a: with_note(a, note)
    )
    outcome = done.outcome
    if not isinstance(outcome, Applied):
        # a fresh exec_id is never a Duplicate; the other outcomes: the transition said no
        reason = "duplicate" if isinstance(outcome, Duplicate) else outcome.reason
        detail = f"the {plan.worker.value} transition refused it ({type(outcome).__name__})"
        refused = Refused(order.order_id, reason, detail, done.order.status.value)
        return _refuse(log, refused, who)
    exec_id = plan.report.exec_id
    try:
        await publish_effects(services, outcome.effects, trace_id)
    except Exception as exc:
        log.error(
            f"{TAG}:PUBLISH_FAILED",
            exc=exc,
            exec_id=exec_id,
            hint=f"committed; re-run with --exec-id {exec_id} to send its effects",
            **who,
        )
        raise
    change = Change(done.order, done.account, outcome, request.kind)
    summary = spec.describe(change)
    for calculation in outcome.calculations:
        data = calculation_to_dict(calculation)
        log.calculation(str(data.pop("name")), **data)
    for event in summary.events:
        log.info(f"{TAG}:{event.suffix}", **event.fields, **who)
    fields = {
        **base_fields(done.order, request.kind),
        "exec_id": exec_id,
        "worker": plan.worker.value,
        "lifecycle_id": request.lifecycle_id,
        "status_before": done.order.status.value,
        "status": outcome.order.status.value,
        **summary.fields,
        **who,
    }
    if plan.report.avg_px is not None:
        fields["price"] = plan.report.avg_px
    log.success(f"{TAG}:SUCCESS", **fields)
    return Resolved(
        order_id=order.order_id,
        exec_id=exec_id,
        trace_id=trace_id,
        worker=plan.worker.value,
        kind=request.kind.value,
        status_before=done.order.status.value,
        status=outcome.order.status.value,
        fields=fields,
    )


async def _republish(
    services: Services,
    log: EventLogger,
    order: Order,
    exec_id: str,
    trace_id: str,
    who: dict[str, Any],
) -> Resolved:
    """Send again what an applied resolution recorded (its publish may have failed)."""
    effects = next((e.effects for e in order.outbox if e.exec_id == exec_id), ())
    sent = await publish_effects(services, effects, trace_id)
    log.info(
        f"{TAG}:SKIP:DUPLICATE",
        exec_id=exec_id,
        republished_db=sent.db_events,
        republished_lp=sent.lp_requests,
        status=order.status.value,
        **who,
    )
    return Resolved(
        order_id=order.order_id,
        exec_id=exec_id,
        trace_id=trace_id,
        worker="",
        kind="",
        status_before=order.status.value,
        status=order.status.value,
        republished=True,
    )


def _refuse(log: EventLogger, refused: Refused, who: dict[str, Any]) -> Refused:
    extra = {"detail": refused.detail, "status": refused.status}
    log.info(
        f"{TAG}:REFUSED",
        refusal=refused.reason,
        **{k: v for k, v in extra.items() if v},
        **who,
    )
    return refused


async def _load(services: Services, order_id: str) -> Order | None:
    """The order from the state store; its account from the lifecycle index or the database."""
    record = await services.state.get_lifecycle(order_id)
    account_id = record.get("account_id") if record is not None else None
    if not isinstance(account_id, str):
        stored = await services.database.get_order(order_id)
        if stored is None:
            return None
        account_id = stored.account_id
    doc = await services.state.get_order(account_id, order_id)
    return None if doc is None else order_from_dict(doc.data)
