"""Dead-letter tools: keep, list and replay what the pipeline could not process.

Listing must not lose or disturb messages. Two ways were possible: peek at the DLQ
(``get`` then ``nack(requeue=True)``), or move each message into the ``dead_letters``
table and list from there. Peeking is not durable: a crash between ``get`` and the
requeue leaves the message unacknowledged until the connection dies, it reorders the
queue, and nothing records that a message was replayed. So every ``list`` and
``replay`` first *moves* the DLQ into the database (``drain_dlq``: insert the row, then
ack the message; a crash in between at worst stores one message twice, and a replayed
duplicate is harmless because every consumer is idempotent), then works on the table.
The table keeps the reason, error, original queue, attempts, headers and body, and
``replayed_at`` once a message was re-published to its original queue.

Lines (``supervisor.log``): ``DLQ:MOVED`` per message moved, ``DLQ:LISTED``,
``DLQ:REPLAYED`` per message re-published, ``DLQ:REPLAY`` summary (``dry_run=true`` when
nothing was sent).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from execflow.backends.bus import (
    H_ATTEMPT,
    H_ATTEMPTS,
    H_DEAD_LETTERED_AT,
    H_ERROR,
    H_ORIGINAL_QUEUE,
    H_REASON,
    H_TRACE_ID,
    Bus,
)
from execflow.backends.database import Database, DeadLetterRecord, StoredDeadLetter
from execflow.logs.events import EventLogger
from execflow.pipeline.retry import H_PARKS, H_RETRIES

__all__ = [
    "COMPONENT",
    "H_REPLAYED_FROM",
    "DeadLetterView",
    "ReplayResult",
    "drain_dlq",
    "list_dead_letters",
    "replay_dead_letters",
]

COMPONENT = "supervisor"
H_REPLAYED_FROM = "x-replayed-from"
"""Header on a replayed message: the ``dead_letters`` row it came from."""

_DLQ_HEADERS = (H_REASON, H_ERROR, H_ORIGINAL_QUEUE, H_ATTEMPTS, H_DEAD_LETTERED_AT)
_COUNTERS = (H_ATTEMPT, H_RETRIES, H_PARKS)
_ORDER_KEYS = ("order_id", "lifecycle_id", "clordid", "11")


@dataclass(frozen=True, slots=True)
class DeadLetterView:
    """One dead letter as the CLI shows it."""

    id: int
    reason: str
    queue: str
    order: str | None
    trace_id: str | None
    attempts: int
    error: str | None
    created_at: datetime
    age_s: float
    replayed_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (``dlq list --json``)."""
        return {
            "id": self.id,
            "reason": self.reason,
            "queue": self.queue,
            "order": self.order,
            "trace_id": self.trace_id,
            "attempts": self.attempts,
            "error": self.error,
            "created_at": self.created_at.isoformat(),
            "age_s": round(self.age_s, 3),
            "replayed_at": None if self.replayed_at is None else self.replayed_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What a replay did (or would do, with ``dry_run``)."""

    selected: tuple[DeadLetterView, ...]
    replayed: int
    dry_run: bool


async def drain_dlq(bus: Bus, database: Database, log: EventLogger, limit: int = 10_000) -> int:
    """Move up to ``limit`` messages from the DLQ into ``dead_letters``; return how many."""
    moved = 0
    while moved < limit:
        delivery = await bus.get(bus.dlq_name)
        if delivery is None:
            break
        message = delivery.message
        headers = dict(message.headers)
        record = DeadLetterRecord(
            queue=headers.get(H_ORIGINAL_QUEUE, "unknown"),
            reason=headers.get(H_REASON, "unknown"),
            body=message.body,
            headers=headers,
            error=headers.get(H_ERROR),
            attempts=_int(headers.get(H_ATTEMPTS), 1),
            created_at=_when(headers.get(H_DEAD_LETTERED_AT)),
        )
        try:
            row = await database.insert_dead_letter(record)
        except Exception:
            await delivery.nack(requeue=True)
            raise
        await delivery.ack()
        moved += 1
        log.info(
            "DLQ:MOVED",
            dead_letter_id=row,
            reason=record.reason,
            queue=record.queue,
            order_id=_order_of(headers, message.body),
            trace_id=headers.get(H_TRACE_ID),
        )
    return moved


async def list_dead_letters(
    bus: Bus,
    database: Database,
    log: EventLogger,
    now: datetime,
    *,
    reason: str | None = None,
    include_replayed: bool = False,
    limit: int = 100,
) -> list[DeadLetterView]:
    """Move the DLQ into the table, then the stored dead letters, oldest first."""
    moved = await drain_dlq(bus, database, log)
    rows = await database.list_dead_letters(include_replayed=include_replayed, limit=limit)
    views = [_view(row, now) for row in rows if reason is None or row.reason == reason]
    log.info("DLQ:LISTED", count=len(views), moved=moved, reason=reason)
    return views


async def replay_dead_letters(
    bus: Bus,
    database: Database,
    log: EventLogger,
    now: datetime,
    *,
    reason: str | None = None,
    dry_run: bool = False,
    limit: int = 1000,
) -> ReplayResult:
    """Re-publish stored dead letters (of ``reason``) to their original queues, mark them."""
    await drain_dlq(bus, database, log)
    rows = [
        row
        for row in await database.list_dead_letters(include_replayed=False, limit=limit)
        if reason is None or row.reason == reason
    ]
    selected = tuple(_view(row, now) for row in rows)
    replayed = 0
    for row, view in zip(rows, selected, strict=True):
        if dry_run:
            log.info("DLQ:REPLAY_PLANNED", **_line(view))
            continue
        headers = _clean(row.headers)
        headers[H_REPLAYED_FROM] = str(row.id)
        await bus.declare(row.queue)
        await bus.publish(row.queue, row.body, headers, headers.get("message_id"))
        # Published first: a crash before the mark replays it again, which is harmless.
        await database.mark_replayed(row.id)
        replayed += 1
        log.info("DLQ:REPLAYED", **_line(view))
    log.info(
        "DLQ:REPLAY",
        selected=len(selected),
        replayed=replayed,
        reason=reason,
        dry_run=dry_run,
    )
    return ReplayResult(selected, replayed, dry_run)


def _line(view: DeadLetterView) -> dict[str, Any]:
    return {
        "dead_letter_id": view.id,
        "reason": view.reason,
        "queue": view.queue,
        "order_id": view.order,
        "trace_id": view.trace_id,
    }


def _clean(headers: Mapping[str, str]) -> dict[str, str]:
    """The original headers without the DLQ's and the retry counters: a fresh start."""
    return {k: v for k, v in headers.items() if k not in _DLQ_HEADERS and k not in _COUNTERS}


def _view(row: StoredDeadLetter, now: datetime) -> DeadLetterView:
    return DeadLetterView(
        id=row.id,
        reason=row.reason,
        queue=row.queue,
        order=_order_of(row.headers, row.body),
        trace_id=row.headers.get(H_TRACE_ID),
        attempts=row.attempts,
        error=row.error,
        created_at=row.created_at,
        age_s=max(0.0, (now - row.created_at).total_seconds()),
        replayed_at=row.replayed_at,
    )


def _order_of(headers: Mapping[str, str], body: bytes) -> str | None:
    """The order (or, for a raw LP report, the ClOrdID) a dead letter is about."""
    for key in _ORDER_KEYS:
        if headers.get(key):
            return headers[key]
    with contextlib.suppress(orjson.JSONDecodeError):
        data = orjson.loads(body)
        if isinstance(data, dict):
            nested = data.get("lifecycle")
            inner: dict[str, Any] = nested if isinstance(nested, dict) else data
            for key in _ORDER_KEYS:
                value = inner.get(key)
                if isinstance(value, str) and value:
                    return value
    return None


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _when(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.utcoffset() is not None else None
