"""The db writer: ``db_updates`` -> SQL, in batches, idempotently.

It runs on the one ``Runner`` like every consumer. Batching needs no second loop: the
runner hands each delivery to ``DbWriter.handle`` concurrently (``concurrency`` and
``prefetch`` are at least the batch size); ``handle`` decodes the message and waits in
a ``_Batcher`` until its batch is written. A batch is written when
``settings.db_batch_size`` messages wait or ``settings.db_batch_timeout_s`` after its
first one, whichever comes first, in one transaction (``Database.write_batch``): events
(duplicates skipped by event id), then the order snapshots and the account headers and
changed rows of their payloads (only newer versions win, row by row). Only then does every
waiting handler return ``Ack``, so the runner acknowledges the whole batch after the
commit. A failed write fails every message of the batch: each is retried by the runner's
policy (forever: a database outage is not cured by a DLQ), and a retried batch is
harmless because every write is idempotent.

A fence (``pipeline.dbfence``, published by a process about to rebuild the state store)
is passed once every event taken before it is written: it is marked in the state store
and acknowledged (``DBWRITER:FENCE_PASSED``).

Lines in ``db_writer.log``: ``DBWRITER:BATCH`` per batch (counts and write time),
``DBWRITER:SUCCESS`` per new event, ``DBWRITER:SKIP:DUPLICATE`` per event already
stored. The database reports how many events of a batch were new, not which: in a
batch mixing both (rare: a redelivery next to new traffic) the counts are exact but
which lines say duplicate is a guess.

Each event is linked into its account's audit chain by ``write_batch``, in the same
transaction (docs/audit.md); a payload with no canonical JSON form cannot be linked and
is dead-lettered on its own (``malformed_report``) instead of failing its batch forever.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from execflow.backends.bus import Message
from execflow.backends.database import AccountRecord, EventRecord, OrderRecord
from execflow.domain.account_rows import ACCOUNT_CHANGES, rows_of_changes
from execflow.domain.audit import canonical_json
from execflow.domain.codec import CodecError, effect_from_dict
from execflow.domain.effects import DbEvent
from execflow.domain.routing import DlqReason
from execflow.errors import AuditError, DatabaseError, ExecflowError, StoreError
from execflow.logs.events import EventLogger
from execflow.pipeline.dbfence import fence_id_of, fence_key
from execflow.pipeline.results import Ack, DeadLetter, HandlerResult
from execflow.pipeline.retry import OnExhausted, retry_policy
from execflow.pipeline.runner import ConsumerSpec
from execflow.pipeline.services import Services

__all__ = [
    "COMPONENT",
    "TAG",
    "BatchResult",
    "DbWriter",
    "FenceNotPassed",
    "db_writer_spec",
    "write_batch",
]

_HINTS_CLOSE_S = 2.0
"""How long a stopping db writer gives its last live-stream hint."""

COMPONENT = "db_writer"
TAG = "DBWRITER"


class FenceNotPassed(DatabaseError):
    """A fence reached the db writer while earlier events still wait for a retried write."""


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What one written batch did; ``new_ids`` are the events the database did not know."""

    size: int
    inserted: int
    duplicates: int
    orders_upserted: int
    accounts_upserted: int
    new_ids: frozenset[str]


async def write_batch(
    services: Services,
    events: Sequence[DbEvent],
    payload_json: Mapping[str, bytes] | None = None,
) -> BatchResult:
    """Write events, then the newest order snapshots, account headers and account rows
    (one transaction).

    ``payload_json``: the payloads' canonical JSON by event id, where already computed.
    """
    unique: dict[str, DbEvent] = {}
    for event in events:
        unique.setdefault(event.event_id, event)
    known = payload_json or {}
    records = [
        EventRecord(
            e.event_id,
            e.order_id,
            e.account_id,
            e.kind.value,
            dict(e.payload),
            e.exec_id,
            payload_json=known.get(e.event_id),
        )
        for e in unique.values()
    ]
    orders, accounts = _snapshots(unique.values())
    counts = await services.database.write_batch(records, orders, accounts)
    inserted = counts.inserted
    # Which ids were new: exact when all or none were; counted in order otherwise.
    new_ids = frozenset(list(unique)[:inserted])
    return BatchResult(
        size=len(events),
        inserted=inserted,
        duplicates=len(events) - inserted,
        orders_upserted=counts.orders_upserted,
        accounts_upserted=counts.accounts_upserted,
        new_ids=new_ids,
    )


def _snapshots(events: Any) -> tuple[list[OrderRecord], list[AccountRecord]]:
    orders: list[OrderRecord] = []
    accounts: list[AccountRecord] = []
    for event in events:
        order = event.payload.get("order")
        if isinstance(order, dict):
            orders.append(
                OrderRecord(
                    event.order_id,
                    event.account_id,
                    str(order.get("status", "")),
                    _version(order),
                    order,
                )
            )
        account = event.payload.get("account")
        if isinstance(account, dict):
            # the header and what changed (or, from older events, the whole account)
            version = _version(account)
            changes = event.payload.get(ACCOUNT_CHANGES)
            rows = tuple(rows_of_changes(event.account_id, version, changes))
            accounts.append(AccountRecord(event.account_id, version, account, rows=rows))
    return orders, accounts


def _version(data: dict[str, Any]) -> int:
    value = data.get("version", 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


@dataclass(slots=True)
class _Waiting:
    event: DbEvent
    payload_json: bytes
    done: asyncio.Future[tuple[BatchResult, bool]]


class _Batcher:
    """Collects items from concurrent callers and writes them in batches, one at a time."""

    def __init__(
        self,
        write: Callable[[list[_Waiting]], Awaitable[BatchResult]],
        size: int,
        timeout_s: float,
    ) -> None:
        self._write = write
        self._size = size
        self._timeout_s = timeout_s
        self._waiting: list[_Waiting] = []
        self._writing: list[_Waiting] = []
        self.unwritten: set[str] = set()
        """Event ids whose write failed (handed back for a retry) and has not succeeded since."""
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None

    async def submit(self, event: DbEvent, payload_json: bytes) -> tuple[BatchResult, bool]:
        """Wait until ``event``'s batch is written: (batch result, first in its batch)."""
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.create_task(self._run(), name="db_writer:batches")
        item = _Waiting(event, payload_json, asyncio.get_running_loop().create_future())
        self._waiting.append(item)
        self._arrived.set()
        if len(self._waiting) >= self._size:
            self._full.set()
        return await item.done

    async def barrier(self) -> None:
        """Return once every item submitted before this call is settled (written or failed)."""
        pending = [item.done for item in (*self._writing, *self._waiting)]
        if pending:
            await asyncio.wait(pending)

    async def close(self) -> None:
        """Stop the batching task; waiting callers are cancelled (their messages requeue)."""
        task, self._loop_task = self._loop_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for item in self._waiting:
            item.done.cancel()
        self._waiting.clear()

    async def _run(self) -> None:
        while True:
            await self._arrived.wait()
            if len(self._waiting) < self._size:
                try:
                    async with asyncio.timeout(self._timeout_s):
                        await self._full.wait()
                except TimeoutError:
                    pass
            batch, self._waiting = self._waiting[: self._size], self._waiting[self._size :]
            self._full.clear()
            if len(self._waiting) >= self._size:
                self._full.set()
            if not self._waiting:
                self._arrived.clear()
            # Waiters cancelled meanwhile (shutdown) are left out: their messages requeue.
            batch = [item for item in batch if not item.done.done()]
            if batch:
                self._writing = batch
                try:
                    await self._settle(batch)
                finally:
                    self._writing = []

    async def _settle(self, batch: list[_Waiting]) -> None:
        try:
            result = await self._write(batch)
        except Exception as exc:  # noqa: BLE001 - handed to every waiter, retried by the runner
            for item in batch:
                self.unwritten.add(item.event.event_id)
                if not item.done.done():
                    item.done.set_exception(exc)
            return
        seen: set[str] = set()
        for item in batch:
            self.unwritten.discard(item.event.event_id)
            first = item.event.event_id not in seen
            seen.add(item.event.event_id)
            if not item.done.done():
                item.done.set_result((result, first))


class DbWriter:
    """The db writer's handler and its batcher; ``close()`` after the runner stopped."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self.log: EventLogger = services.logger(COMPONENT)
        settings = services.settings
        self._batcher = _Batcher(self._write, settings.db_batch_size, settings.db_batch_timeout_s)
        self._hints: set[str] = set()
        self._hinting: asyncio.Task[None] | None = None

    async def handle(self, message: Message) -> HandlerResult:
        """Decode one DB event, wait for its batch, report new or duplicate (or pass a fence)."""
        try:
            data = orjson.loads(message.body)
            fence_id = fence_id_of(data)
            if fence_id is not None:
                return await self._fence(fence_id)
            effect = effect_from_dict(data)
        except (orjson.JSONDecodeError, CodecError) as exc:
            return DeadLetter(DlqReason.MALFORMED_REPORT.value, f"{type(exc).__name__}: {exc}")
        if not isinstance(effect, DbEvent):
            return DeadLetter(DlqReason.MALFORMED_REPORT.value, "not a DbEvent")
        try:
            # computed here, alone: one event that cannot enter the audit chain would
            # otherwise fail its whole batch on every retry, forever
            payload_json = canonical_json(effect.payload)
        except AuditError as exc:
            return DeadLetter(DlqReason.MALFORMED_REPORT.value, f"not chainable: {exc}")
        result, first = await self._batcher.submit(effect, payload_json)
        fields = {
            "event_id": effect.event_id,
            "event_kind": effect.kind.value,
            "order_id": effect.order_id,
            "user": effect.account_id,
        }
        if effect.exec_id:
            fields["exec_id"] = effect.exec_id
        if first and effect.event_id in result.new_ids:
            return Ack(f"{TAG}:SUCCESS", fields)
        return Ack(f"{TAG}:SKIP:DUPLICATE", fields, outcome="skipped")

    async def close(self) -> None:
        """Stop batching (call after the runner stopped consuming), then the hints."""
        await self._batcher.close()
        if self._hinting is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._hinting), _HINTS_CLOSE_S)
            self._hinting.cancel()
            await asyncio.gather(self._hinting, return_exceptions=True)

    async def _fence(self, fence_id: str) -> HandlerResult:
        """Pass a fence (``pipeline.dbfence``): everything taken before it is written."""
        await self._batcher.barrier()
        unwritten = len(self._batcher.unwritten)
        if unwritten:
            # Raised, so the runner retries the fence after its backoff (forever, like any
            # db writer message): by then the failed events may have been written.
            raise FenceNotPassed(
                "events taken before the fence are not written yet", unwritten=unwritten
            )
        try:
            await self._services.state.put_lifecycle(fence_key(fence_id), {"marker": fence_id})
        except StoreError as exc:
            # Not a StoreError for the runner: that would make the db writer rebuild the
            # state itself, behind a fence only it can pass. The fence is simply retried.
            raise FenceNotPassed("the fence could not be marked in the state store") from exc
        return Ack(f"{TAG}:FENCE_PASSED", {"fence_id": fence_id})

    async def _write(self, batch: list[_Waiting]) -> BatchResult:
        started = self._services.clock.monotonic()
        result = await write_batch(
            self._services,
            [item.event for item in batch],
            {item.event.event_id: item.payload_json for item in batch},
        )
        if result.inserted:
            self._announce(batch)
        stats = self.log.stats
        stats.incr("batches")
        stats.incr("events_inserted", result.inserted)
        stats.incr("duplicates", result.duplicates)
        stats.incr("orders_upserted", result.orders_upserted)
        stats.incr("accounts_upserted", result.accounts_upserted)
        self.log.info(
            f"{TAG}:BATCH",
            size=result.size,
            inserted=result.inserted,
            duplicates=result.duplicates,
            orders_upserted=result.orders_upserted,
            accounts_upserted=result.accounts_upserted,
            write_ms=round((self._services.clock.monotonic() - started) * 1000, 3),
        )
        return result

    def _announce(self, batch: list[_Waiting]) -> None:
        """Tell the live streams which accounts have new events, in the background.

        Best effort, and never in the way of the next batch: a hint the feed loses only
        delays a stream until its next wake-up (it reads from the database). Hints that
        pile up while one is being sent go out together.
        """
        if self._services.feed is None:
            return
        # every account of the batch: a spare wake-up costs a stream one empty read
        self._hints.update(item.event.account_id for item in batch)
        if self._hinting is None or self._hinting.done():
            self._hinting = asyncio.create_task(self._send_hints(), name="db-writer-hints")

    async def _send_hints(self) -> None:
        feed = self._services.feed
        assert feed is not None
        while self._hints:
            accounts, self._hints = self._hints, set()
            try:
                await feed.announce(accounts)
            except ExecflowError as exc:
                self.log.stats.incr("announce_failures")
                self.log.warning(f"{TAG}:ANNOUNCE_FAILED", accounts=len(accounts), error=str(exc))


def db_writer_spec(services: Services, writer: DbWriter) -> ConsumerSpec:
    """The db writer's consumer: wide enough to fill a batch, retrying forever."""
    settings = services.settings
    width = max(settings.db_batch_size, settings.concurrency)
    return ConsumerSpec(
        component=COMPONENT,
        queue=services.queues.db_updates,
        handler=writer.handle,
        tag=TAG,
        prefetch=max(width, settings.prefetch),
        concurrency=width,
        retry=retry_policy(settings, on_exhausted=OnExhausted.RETRY_FOREVER),
    )
