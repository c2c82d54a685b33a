"""The db writer: batches, idempotency, newest snapshots, malformed messages, the batch line."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import orjson
import pytest

from execflow.backends.database import BatchCounts
from execflow.backends.feed import InMemoryFeed
from execflow.backends.memory_bus import InMemoryBus
from execflow.clock import FakeClock
from execflow.domain.codec import effect_to_dict
from execflow.domain.effects import DbEvent, EventKind
from execflow.errors import BusError, DatabaseError, StoreError
from execflow.pipeline.dbfence import fence_key
from execflow.pipeline.dbwriter import DbWriter, db_writer_spec
from execflow.pipeline.runner import Runner
from execflow.pipeline.services import Services
from execflow.settings import Settings
from tests.pipeline.conftest import LogReader, drain


def _event(order: str, n: int, version: int, balance: str = "100.00") -> DbEvent:
    return DbEvent(
        event_id=f"{order}:e{n}:ORDER_OPENED",
        kind=EventKind.ORDER_OPENED,
        account_id="live:6",
        order_id=order,
        exec_id=f"e{n}",
        payload={
            "order": {"order_id": order, "status": "OPEN", "version": version},
            "account": {"account_id": "live:6", "balance": balance, "version": version},
            "deltas": {},
            "report": None,
        },
    )


async def _publish(services: Services, events: list[DbEvent]) -> None:
    for event in events:
        await services.bus.publish(
            services.queues.db_updates,
            orjson.dumps(effect_to_dict(event)),
            {"trace_id": f"t-{event.event_id}"},
            event.event_id,
        )


async def _run(services: Services) -> None:
    writer = DbWriter(services)
    runner = Runner(services, db_writer_spec(services, writer))
    await runner.start()
    assert isinstance(services.bus, InMemoryBus)
    await services.bus.join(services.queues.db_updates)
    await runner.stop()
    await writer.close()


async def test_batches_are_written_idempotently_with_newest_snapshots(
    services: Services, settings: Settings, read_logs: LogReader
) -> None:
    events = [_event("o1", 1, 1, "90.00"), _event("o1", 2, 3, "70.00"), _event("o2", 3, 2)]
    # redelivery of the first event, and the older snapshot of o1 last
    await _publish(services, [*events, events[0], _event("o1", 4, 2, "80.00")])
    await _run(services)
    assert await services.database.count_events() == 4
    order = await services.database.get_order("o1")
    assert order is not None and order.version == 3
    account = await services.database.get_account("live:6")
    assert account is not None and account.data["balance"] == "70.00"
    assert await services.bus.queue_depth(services.queues.db_updates) == 0
    assert len(read_logs.find("db_writer", "DBWRITER:SUCCESS")) == 4
    [dup] = read_logs.find("db_writer", "DBWRITER:SKIP:DUPLICATE")
    assert dup.get("event_id") == events[0].event_id and dup.get("order_id") == "o1"
    batches = read_logs.find("db_writer", "DBWRITER:BATCH")
    assert sum(int(b.get("size") or 0) for b in batches) == 5
    assert sum(int(b.get("inserted") or 0) for b in batches) == 4
    assert all(int(b.get("size") or 0) <= settings.db_batch_size for b in batches)


async def test_a_second_delivery_of_a_whole_batch_changes_nothing(
    services: Services, read_logs: LogReader
) -> None:
    events = [_event("o1", n, n) for n in range(1, 6)]
    await _publish(services, events)
    await _run(services)
    await _publish(services, events)
    await _run(services)
    assert await services.database.count_events() == 5
    assert len(read_logs.find("db_writer", "DBWRITER:SKIP:DUPLICATE")) == 5
    stats = services.logger("db_writer").stats
    assert (stats.count("success"), stats.count("skipped"), stats.count("duplicates")) == (5, 5, 5)


async def test_malformed_message_is_dead_lettered_alone(services: Services) -> None:
    await services.bus.publish(services.queues.db_updates, b"{not json")
    await _publish(services, [_event("o9", 1, 1)])
    await _run(services)
    assert await services.database.count_events() == 1
    assert isinstance(services.bus, InMemoryBus)
    [dead] = await drain(services.bus, services.queues.dlq)
    assert dead.headers["x-reason"] == "malformed_report"


async def test_a_fence_passes_once_every_earlier_event_is_written_retries_included(
    services: Services, monkeypatch: pytest.MonkeyPatch, read_logs: LogReader
) -> None:
    database = services.database
    real_write = database.write_batch
    failures = [DatabaseError("connection reset")]

    async def flaky_write(*batch: Sequence[Any]) -> BatchCounts:
        if failures:
            raise failures.pop()
        return await real_write(*batch)

    monkeypatch.setattr(database, "write_batch", flaky_write)
    real_put = services.state.put_lifecycle
    written_at_mark: list[int] = []

    async def put_lifecycle(lifecycle_id: str, data: dict[str, Any]) -> bool:
        if lifecycle_id == fence_key("f1"):
            written_at_mark.append(await database.count_events())
        return await real_put(lifecycle_id, data)

    monkeypatch.setattr(services.state, "put_lifecycle", put_lifecycle)
    await _publish(services, [_event("o1", n, n) for n in range(1, 4)])
    await services.bus.publish(services.queues.db_updates, orjson.dumps({"fence": "f1"}))
    await _run(services)
    # the first batch failed and went back for a retry: the fence waited for it
    assert not failures and read_logs.find("db_writer", "DBWRITER:RETRY")
    assert written_at_mark == [3]
    assert await services.state.get_lifecycle(fence_key("f1")) is not None
    assert read_logs.one("db_writer", "DBWRITER:FENCE_PASSED").get("fence_id") == "f1"


async def test_a_fence_the_store_cannot_mark_is_retried_without_a_rebuild(
    services: Services, monkeypatch: pytest.MonkeyPatch, read_logs: LogReader
) -> None:
    real_put = services.state.put_lifecycle
    failures = [StoreError("Redis unreachable: put_lifecycle")]

    async def put_lifecycle(lifecycle_id: str, data: dict[str, Any]) -> bool:
        if failures:
            raise failures.pop()
        return await real_put(lifecycle_id, data)

    monkeypatch.setattr(services.state, "put_lifecycle", put_lifecycle)
    await services.bus.publish(services.queues.db_updates, orjson.dumps({"fence": "f2"}))
    await _run(services)
    assert await services.state.get_lifecycle(fence_key("f2")) is not None
    assert read_logs.one("db_writer", "DBWRITER:RETRY").get("error_type") == "FenceNotPassed"
    # the db writer never rebuilds the state: it would wait behind a fence only it passes
    assert not read_logs.find("db_writer", "STATE:FALLBACK")


async def test_written_accounts_are_announced_and_a_lost_announcement_costs_nothing(
    services: Services, read_logs: LogReader
) -> None:
    heard: list[frozenset[str]] = []

    async def listener(accounts: frozenset[str]) -> None:
        heard.append(accounts)

    feed = InMemoryFeed()
    await feed.listen(listener)
    await _publish(services, [_event("o1", 1, 1)])
    await _run(replace(services, feed=feed))
    assert heard == [frozenset({"live:6"})]

    class Broken(InMemoryFeed):
        async def announce(self, account_ids: Any) -> None:
            raise BusError("broker away")

    await _publish(services, [_event("o2", 2, 2)])
    await _run(replace(services, feed=Broken()))
    assert await services.database.count_events() == 2  # written all the same
    [failed] = read_logs.find("db_writer", "DBWRITER:ANNOUNCE_FAILED")
    assert failed.get("accounts") == "1"


async def test_the_batch_write_time_is_read_from_the_injected_clock(
    services: Services, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, read_logs: LogReader
) -> None:
    database = services.database
    real_write = database.write_batch

    async def slow_write(*batch: Sequence[Any]) -> BatchCounts:
        clock.advance(0.25)  # the write takes 250 ms of fake time
        return await real_write(*batch)

    monkeypatch.setattr(database, "write_batch", slow_write)
    await _publish(services, [_event("o1", 1, 1)])
    await _run(services)
    [batch] = read_logs.find("db_writer", "DBWRITER:BATCH")
    assert batch.get("write_ms") == "250.0"
