"""The dispatcher: validate each LP message, resolve its lifecycle id, route it.

Per message: a body over ``max_message_bytes`` is not parsed (DLQ ``oversize``, its
first bytes kept); ``parse_message`` (malformed -> DLQ ``malformed_report``); non-execution
messages are counted and ignored (DEBUG ``DISPATCH:IGNORED``); the lifecycle id is
looked up in the state store; ``routing.decide`` picks the worker queue, an ignore
(LP acks of requests that need none) or the DLQ (``missing_lifecycle_id``,
``unknown_lifecycle_id``, ``unmapped_route``). A routed report gets a new ``trace_id``
and travels as ``{"report": ..., "lifecycle": ...}`` (docs/pipeline-wiring.md).
"""

from __future__ import annotations

from typing import Any

import orjson

from execflow.backends.bus import H_TRACE_ID, Message
from execflow.domain.codec import lifecycle_from_dict, lifecycle_to_dict, report_to_dict
from execflow.domain.messages import ExecutionReport, NonExecutionMessage
from execflow.domain.models import LifecycleRecord
from execflow.domain.reports import parse_message
from execflow.domain.routing import DeadLetterDecision, DlqReason, Ignore, Worker, decide
from execflow.errors import ReportError
from execflow.logs.context import log_context
from execflow.logs.events import DEBUG
from execflow.pipeline.completeness import require_complete
from execflow.pipeline.effects import H_LIFECYCLE_ID
from execflow.pipeline.results import Ack, DeadLetter, HandlerResult
from execflow.pipeline.retry import park_policy, retry_policy
from execflow.pipeline.runner import H_ORDER_ID, ConsumerSpec, Handler
from execflow.pipeline.services import Services

__all__ = [
    "COMPONENT",
    "H_ACCOUNT_ID",
    "H_KIND",
    "OVERSIZE_KEPT_BYTES",
    "TAG",
    "dispatcher_consumer",
    "make_dispatcher",
]

COMPONENT = "dispatcher"
OVERSIZE_KEPT_BYTES = 4096
"""How much of an oversize message the DLQ keeps: enough to see what and who sent it."""
OVERSIZE_HEAD_LOGGED = 200
TAG = "DISPATCH"
H_KIND = "kind"
H_ACCOUNT_ID = "account_id"


def make_dispatcher(services: Services) -> Handler:
    """The dispatcher's handler."""
    log = services.logger(COMPONENT)
    log.stats.incr("ignored", 0)
    queues = services.queues
    metrics = services.metrics
    max_bytes = services.settings.max_message_bytes

    async def handle(message: Message) -> HandlerResult:
        trace_id = services.ids.new_id()
        with log_context(trace_id=trace_id):
            if metrics is not None:
                metrics.report_received()
            log.debug(
                f"{TAG}:RECEIVED",
                message_id=message.message_id,
                size_bytes=len(message.body),
                attempt=message.attempt,
            )
            if len(message.body) > max_bytes:
                return _oversize(message.body, max_bytes, trace_id, queues.dlq)
            parsed: ExecutionReport | NonExecutionMessage | ReportError
            try:
                parsed = parse_message(message.body)
            except ReportError as exc:
                parsed = exc
            lifecycle = await _lifecycle(services, parsed)
            decision = decide(parsed, lifecycle)
            fields = _fields(parsed, lifecycle, trace_id)
            if isinstance(decision, Ignore):
                log.stats.incr("ignored")
                if metrics is not None:
                    metrics.report_ignored()
                return Ack(
                    f"{TAG}:IGNORED",
                    {**fields, "reason": decision.reason},
                    outcome="skipped",
                    level=DEBUG,
                )
            if isinstance(decision, DeadLetterDecision):
                return _dead_letter(decision, fields, queues.dlq)
            if not isinstance(parsed, ExecutionReport) or lifecycle is None:
                # decide() routes only a report with a known lifecycle; anything else is a bug.
                raise TypeError(f"route without a report and lifecycle: {decision!r}")
            queue = await _publish(services, decision.worker, parsed, lifecycle, trace_id)
            log.stats.incr(f"routed.worker_{decision.worker.value}")
            if metrics is not None:
                metrics.report_routed(queue)
            routed = {**fields, "worker": decision.worker.value, "target_queue": queue}
            return Ack(f"{TAG}:ROUTED", routed)

    return handle


async def _lifecycle(
    services: Services, parsed: ExecutionReport | NonExecutionMessage | ReportError
) -> LifecycleRecord | None:
    if not isinstance(parsed, ExecutionReport) or parsed.lifecycle_id is None:
        return None
    data = await services.state.get_lifecycle(parsed.lifecycle_id)
    if data is None:
        # Unknown, or lost with the store: a store that came back empty (even with no
        # error seen here) is rebuilt before this report is routed, not dead-lettered.
        await require_complete(services.state, "lifecycle", parsed.lifecycle_id)
        return None
    return lifecycle_from_dict(data)


async def _publish(
    services: Services,
    worker: Worker,
    report: ExecutionReport,
    lifecycle: LifecycleRecord,
    trace_id: str,
) -> str:
    queue = services.queues.worker(worker.value)
    body = orjson.dumps(
        {"report": report_to_dict(report), "lifecycle": lifecycle_to_dict(lifecycle)}
    )
    headers = {
        H_TRACE_ID: trace_id,
        H_LIFECYCLE_ID: lifecycle.lifecycle_id,
        H_KIND: lifecycle.kind.value,
        H_ACCOUNT_ID: lifecycle.account_id,
        H_ORDER_ID: lifecycle.order_id,
    }
    # One message id per report and worker: a redelivered report republishes the same id.
    message_id = f"{report.exec_id}:{worker.value}"
    await services.bus.publish(queue, body, headers, message_id=message_id)
    return queue


def _fields(
    parsed: ExecutionReport | NonExecutionMessage | ReportError,
    lifecycle: LifecycleRecord | None,
    trace_id: str,
) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if isinstance(parsed, ExecutionReport):
        fields.update(
            exec_id=parsed.exec_id,
            lifecycle_id=parsed.lifecycle_id,
            status=parsed.ord_status.value,
            symbol=parsed.symbol,
            provider=parsed.provider or None,
        )
    elif isinstance(parsed, NonExecutionMessage):
        fields.update(msg_type=parsed.msg_type, provider=parsed.provider or None)
    if lifecycle is not None:
        fields.update(
            kind=lifecycle.kind.value, order_id=lifecycle.order_id, user=lifecycle.account_id
        )
    fields["trace_id"] = trace_id
    return {k: v for k, v in fields.items() if v is not None}


def _dead_letter(decision: DeadLetterDecision, fields: dict[str, Any], dlq: str) -> DeadLetter:
    detail = decision.detail or decision.reason.value
    return DeadLetter(
        decision.reason.value, detail, {**fields, "detail": detail, "target_queue": dlq}
    )


def _oversize(body: bytes, max_bytes: int, trace_id: str, dlq: str) -> DeadLetter:
    """Too large to parse: dead-lettered unread, the DLQ keeps its first bytes."""
    kept = body[:OVERSIZE_KEPT_BYTES]
    detail = f"{len(body)} bytes > max_message_bytes {max_bytes}; first {len(kept)} bytes kept"
    fields = {
        "size_bytes": len(body),
        "max_bytes": max_bytes,
        "head": kept[:OVERSIZE_HEAD_LOGGED].decode("utf-8", "replace"),
        "trace_id": trace_id,
        "detail": detail,
        "target_queue": dlq,
    }
    return DeadLetter(DlqReason.OVERSIZE.value, detail, fields, body=kept)


def dispatcher_consumer(services: Services) -> ConsumerSpec:
    """The dispatcher's consumer spec (reads ``reports``)."""
    settings = services.settings
    return ConsumerSpec(
        component=COMPONENT,
        queue=services.queues.reports,
        handler=make_dispatcher(services),
        tag=TAG,
        prefetch=settings.prefetch,
        concurrency=settings.concurrency,
        retry=retry_policy(settings),
        park=park_policy(settings),
    )
