"""The seven workers: one generic handler, parametrised by a ``WorkerSpec``.

Per message (body ``{"report": ..., "lifecycle": ...}`` from the dispatcher):
``transact`` loads and applies the transition (committing an ``Applied`` one with
compare-and-set), then the outcome decides:

* Applied     -> publish effects (lifecycle first, confirmed), calculation lines,
                 worker events, counters; ``<TAG>:SUCCESS`` after the ack.
* Duplicate   -> re-publish the effects recorded with it; ``<TAG>:SKIP:DUPLICATE``.
* Stale       -> ``<TAG>:SKIP:STALE``.
* TooEarly    -> park; after the park attempts DLQ ``precondition_timeout``
                 (``missing_conversion_rate`` when a USD rate is what is missing).
* NeedsReview -> DLQ ``needs_review`` with an ERROR line.
* Mismatch    -> DLQ ``report_mismatch`` / ``overfill`` / ``price_out_of_band`` with an
                 ERROR line naming each contradicting field (``mismatch_<field>=...``).
* Invalid     -> DLQ ``invalid_transition`` with an ERROR line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from execflow.backends.bus import H_TRACE_ID, Message
from execflow.domain.codec import (
    CodecError,
    calculation_to_dict,
    lifecycle_from_dict,
    report_from_dict,
)
from execflow.domain.messages import ExecutionReport
from execflow.domain.models import LifecycleRecord
from execflow.domain.outcomes import (
    MISSING_CONVERSION_RATE,
    Applied,
    Duplicate,
    Mismatch,
    NeedsReview,
    Stale,
    TooEarly,
)
from execflow.domain.routing import DlqReason, Worker
from execflow.logs.context import log_context
from execflow.logs.events import ERROR, EventLogger
from execflow.pipeline.effects import publish_effects
from execflow.pipeline.keyed_lock import KeyedLock
from execflow.pipeline.results import Ack, DeadLetter, HandlerResult, Park
from execflow.pipeline.retry import park_policy, retry_policy
from execflow.pipeline.runner import ConsumerSpec, Handler
from execflow.pipeline.services import Services
from execflow.pipeline.transact import transact
from execflow.pipeline.worker_specs import WORKER_SPECS, Change, WorkerSpec, base_fields

__all__ = [
    "decode_work",
    "make_worker_handler",
    "worker_consumer",
    "worker_consumers",
]


def decode_work(body: bytes) -> tuple[ExecutionReport, LifecycleRecord]:
    """The dispatcher's message body; ``CodecError`` (never retried) when malformed."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise CodecError("worker message is not JSON", error=str(exc)) from exc
    if not isinstance(data, Mapping) or "report" not in data or "lifecycle" not in data:
        raise CodecError("worker message needs 'report' and 'lifecycle'")
    return report_from_dict(data["report"]), lifecycle_from_dict(data["lifecycle"])


def make_worker_handler(services: Services, spec: WorkerSpec) -> Handler:
    """The handler of one worker kind."""
    log = services.logger(spec.component)
    tag = spec.tag
    accounts = KeyedLock()  # this consumer's handlers take turns on one account
    for counter in spec.counters:
        log.stats.incr(counter, 0)  # every own counter shows on STATS lines from the start

    async def handle(message: Message) -> HandlerResult:
        report, lifecycle = decode_work(message.body)
        trace_id = message.headers.get(H_TRACE_ID)
        with log_context(order_id=lifecycle.order_id):
            log.debug(
                f"{tag}:RECEIVED",
                exec_id=report.exec_id,
                lifecycle_id=lifecycle.lifecycle_id,
                kind=lifecycle.kind.value,
                ord_status=report.ord_status.value,
                attempt=message.attempt,
            )
            async with accounts.hold(lifecycle.account_id):
                done = await transact(services, spec.worker, lifecycle, report, log, tag)
            outcome = done.outcome
            fields = base_fields(done.order, lifecycle.kind)
            fields["exec_id"] = report.exec_id
            if isinstance(outcome, Applied):
                change = Change(done.order, done.account, outcome, lifecycle.kind)
                await publish_effects(services, outcome.effects, trace_id)
                return _applied(log, spec, change, fields, done.conflicts)
            if isinstance(outcome, Duplicate):
                sent = await publish_effects(services, outcome.effects, trace_id)
                fields.update(republished_db=sent.db_events, republished_lp=sent.lp_requests)
                return Ack(f"{tag}:SKIP:DUPLICATE", fields, outcome="skipped")
            if isinstance(outcome, Stale):
                return Ack(f"{tag}:SKIP:STALE", {**fields, "reason": outcome.reason}, "skipped")
            if isinstance(outcome, TooEarly):
                exhausted = (
                    DlqReason.MISSING_CONVERSION_RATE.value
                    if outcome.reason == MISSING_CONVERSION_RATE
                    else None
                )
                return Park(outcome.reason, exhausted, fields)
            if isinstance(outcome, Mismatch):
                return _mismatch(outcome, fields)
            reason = (
                DlqReason.NEEDS_REVIEW
                if isinstance(outcome, NeedsReview)
                else DlqReason.INVALID_TRANSITION
            )
            return DeadLetter(
                reason.value, outcome.reason, {**fields, "detail": outcome.reason}, ERROR
            )

    return handle


def _mismatch(outcome: Mismatch, fields: dict[str, Any]) -> DeadLetter:
    named = {f"mismatch_{name}": said for name, said in outcome.fields.items()}
    line = {**fields, "detail": outcome.detail, "mismatch_fields": ",".join(outcome.fields)}
    return DeadLetter(outcome.reason, outcome.detail, {**line, **named}, ERROR)


def _applied(
    log: EventLogger, spec: WorkerSpec, change: Change, fields: dict[str, Any], conflicts: int
) -> Ack:
    summary = spec.describe(change)
    for calculation in change.applied.calculations:
        data = calculation_to_dict(calculation)
        log.calculation(str(data.pop("name")), **data)
    for event in summary.events:
        log.info(f"{spec.tag}:{event.suffix}", **event.fields)
    for counter in summary.counters:
        log.stats.incr(counter)
    line = {**fields, "status": change.order.status.value, **summary.fields}
    if conflicts:
        line["version_conflicts"] = conflicts
    return Ack(f"{spec.tag}:SUCCESS", line)


def worker_consumer(services: Services, worker: Worker | str) -> ConsumerSpec:
    """The consumer spec of one worker (queue, prefetch, concurrency, retry, park)."""
    spec = WORKER_SPECS[Worker(worker)]
    settings = services.settings
    return ConsumerSpec(
        component=spec.component,
        queue=services.queues.worker(spec.worker.value),
        handler=make_worker_handler(services, spec),
        tag=spec.tag,
        prefetch=settings.prefetch,
        concurrency=settings.concurrency,
        retry=retry_policy(settings),
        park=park_policy(settings),
        metrics_worker=spec.worker.value,
    )


def worker_consumers(services: Services) -> list[ConsumerSpec]:
    """The consumer specs of all seven workers."""
    return [worker_consumer(services, worker) for worker in Worker]
