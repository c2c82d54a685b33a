"""Worker outcomes beyond success: duplicates, stale, park, review, invalid, conflicts, crashes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import replace
from decimal import Decimal

import orjson
import pytest

from execflow.backends.bus import H_ERROR, H_REASON, QueueNames
from execflow.backends.database import AccountRecord
from execflow.backends.memory_bus import InMemoryBus
from execflow.backends.memory_state import InMemoryStateStore
from execflow.backends.state import Versioned, Write
from execflow.clock import FakeClock, SequentialIds
from execflow.domain.codec import (
    lifecycle_to_dict,
    order_to_dict,
    report_to_dict,
)
from execflow.domain.enums import LegState, OrderStatus, ReportStatus, RequestKind
from execflow.domain.messages import ExecutionReport
from execflow.domain.models import LifecycleRecord, Prices
from execflow.errors import BusError, StoreError
from execflow.logs import LogSystem
from execflow.pipeline.completeness import mark_complete
from execflow.pipeline.retry import RetryPolicy
from execflow.pipeline.runner import Runner
from execflow.pipeline.services import Services, open_services
from execflow.pipeline.workers import worker_consumer
from execflow.settings import Settings
from tests.domain.factories import INSTRUMENTS, PRICES
from tests.pipeline.conftest import Book, LogReader, Pipeline, drain, settle

D = Decimal
SL = D("1.07000")
TP = D("1.10000")


async def wait_for(condition: Callable[[], Awaitable[bool]], rounds: int = 5000) -> None:
    """Yield to the loop until ``condition()`` holds (bounded by rounds, not by time)."""
    for _ in range(rounds):
        if await condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


# -- duplicate and stale ---------------------------------------------------------------------


async def test_duplicate_report_republishes_the_recorded_effects(
    book: Book, pipeline: Pipeline, read_logs: LogReader
) -> None:
    await book.submit("o1", sl=SL, tp=TP)
    await pipeline.fill("o1-open", "X1")
    first_events = await pipeline.db_events()
    first_requests = await pipeline.requests()
    account = await book.account()

    await pipeline.fill("o1-open", "X1")  # the LP (or a redelivery) sends it again

    assert await book.account() == account  # nothing applied twice
    again = await pipeline.db_events()
    assert [m.message_id for m in again] == [m.message_id for m in first_events]
    assert [m.body for m in again] == [m.body for m in first_events]
    assert await pipeline.requests() == first_requests
    skip = read_logs.one("worker_open", "OPEN:SKIP:DUPLICATE")
    assert skip.level == "INFO"
    assert (skip.fields["republished_db"], skip.fields["republished_lp"]) == ("1", "2")
    assert skip.fields["exec_id"] == "X1"
    assert skip.fields["trace_id"] == "trace2"
    stats = pipeline.runners[1].log.stats
    assert (stats.count("skipped"), stats.count("success"), stats.count("orders_opened")) == (
        1,
        1,
        1,
    )


async def test_stale_report_is_acknowledged_and_skipped(
    book: Book, pipeline: Pipeline, read_logs: LogReader
) -> None:
    await book.submit("o1")
    await pipeline.fill("o1-open", "X1")
    await pipeline.db_events()
    await pipeline.fill("o1-open", "X2")  # another fill for an order already open
    skip = read_logs.one("worker_open", "OPEN:SKIP:STALE")
    assert (skip.fields["reason"], skip.fields["order_id"]) == ("already_open", "o1")
    assert await pipeline.db_events() == []
    assert await pipeline.dead() == []


# -- too early: park ---------------------------------------------------------------------------


async def register(services: Services, lifecycle_id: str, order_id: str, kind: RequestKind) -> None:
    record = LifecycleRecord(lifecycle_id, "live:6", order_id, kind)
    await services.state.put_lifecycle(lifecycle_id, lifecycle_to_dict(record))


async def test_close_fill_before_the_open_fill_is_parked_then_applied(
    services: Services, bus: InMemoryBus, book: Book, read_logs: LogReader
) -> None:
    await book.submit("o1")
    await register(services, "o1-close", "o1", RequestKind.CLOSE)
    running = Pipeline(services, bus)
    close = running.runners[2]
    slow_park = RetryPolicy(max_attempts=8, base_delay_s=0.5, max_delay_s=0.5, jitter=0.0)
    running.runners[2] = Runner(services, replace(close.spec, park=slow_park), rand=lambda: 0.5)
    await running.start()
    try:
        raw = orjson.dumps(
            {"type": "8", "lifecycle_id": "o1-close", "exec_id": "C1", "ord_status": "2"}
            | {"cum_qty": "0.5", "avg_px": "1.08600"}
        )
        await bus.publish(services.queues.reports, raw)

        async def parked() -> bool:
            return running.runners[2].log.stats.count("parked") == 1

        await wait_for(parked)
        # While the close fill waits, the open fill arrives and the client's close is sent.
        await bus.publish(
            services.queues.reports,
            orjson.dumps(
                {"type": "8", "lifecycle_id": "o1-open", "exec_id": "X1", "ord_status": "2"}
                | {"cum_qty": "0.5", "avg_px": "1.08502"}
            ),
        )

        async def opened() -> bool:
            return (await book.order("o1")).status is OrderStatus.OPEN

        await wait_for(opened)
        await book.close("o1")
        await settle(bus)
    finally:
        await running.stop()

    assert (await book.order("o1")).status is OrderStatus.CLOSED
    parked_line = read_logs.one("worker_close", "CLOSE:PARKED")
    assert parked_line.level == "WARNING"
    assert parked_line.fields["reason"] == "position_not_open"
    assert parked_line.fields["order_id"] == "o1"
    assert parked_line.fields["delay_s"] == "0.5"
    assert read_logs.one("worker_close", "CLOSE:SUCCESS").fields["status"] == "CLOSED"
    assert await drain(bus, bus.dlq_name) == []


async def test_precondition_that_never_comes_times_out_to_the_dlq(
    services: Services, book: Book, pipeline: Pipeline, read_logs: LogReader
) -> None:
    await book.submit("o1")
    await register(services, "o1-close", "o1", RequestKind.CLOSE)
    await pipeline.fill("o1-close", "C1", px="1.08600")

    [dead] = await pipeline.dead()
    assert (dead.headers[H_REASON], dead.headers[H_ERROR]) == (
        "precondition_timeout",
        "position_not_open",
    )
    assert len(read_logs.find("worker_close", "CLOSE:PARKED")) == 2  # park_max_attempts=3
    line = read_logs.one("worker_close", "CLOSE:DLQ")
    assert (line.level, line.fields["reason"], line.fields["order_id"]) == (
        "ERROR",
        "precondition_timeout",
        "o1",
    )
    assert "CLOSE:DLQ" in [r.tag for r in read_logs.records("provider_errors")]
    assert (await book.order("o1")).status is OrderStatus.QUEUED


async def test_missing_conversion_rate_parks_then_dead_letters_with_its_reason(
    services: Services, book: Book, pipeline: Pipeline, read_logs: LogReader
) -> None:
    without_usdjpy = Prices({k: v for k, v in PRICES.quotes.items() if k != "USDJPY"})
    await services.state.flush_all()
    await book.reference_data(prices=without_usdjpy)
    await book.add_account()
    await book.submit("o3", symbol="USDJPY", qty=D("0.1"))
    await pipeline.fill("o3-open", "X1", qty="0.1", px="150.002")

    [dead] = await pipeline.dead()
    assert dead.headers[H_REASON] == "missing_conversion_rate"
    parked = read_logs.find("worker_open", "OPEN:PARKED")
    assert {p.fields["reason"] for p in parked} == {"missing_conversion_rate"}
    assert read_logs.one("worker_open", "OPEN:DLQ").fields["reason"] == "missing_conversion_rate"
    assert (await book.order("o3")).status is OrderStatus.QUEUED


# -- review and invalid ------------------------------------------------------------------------


async def test_both_legs_filled_goes_to_review_with_an_error_line(
    book: Book, pipeline: Pipeline, read_logs: LogReader
) -> None:
    await book.submit("o1", sl=SL, tp=TP)
    await pipeline.fill("o1-open", "X1")
    await pipeline.send("o1-sl-1", "S1", "PENDING", stop_px="1.07001")
    await pipeline.send("o1-tp-1", "T1", "PENDING", price="1.10001")
    await pipeline.fill("o1-sl-1", "S2", px="1.07001")
    balance = (await book.account()).balance
    await pipeline.fill("o1-tp-1", "T2", px="1.10001")

    [dead] = await pipeline.dead()
    assert (dead.headers[H_REASON], dead.headers[H_ERROR]) == ("needs_review", "both_legs_filled")
    line = read_logs.one("worker_close", "CLOSE:DLQ")
    assert (line.level, line.fields["reason"], line.fields["detail"]) == (
        "ERROR",
        "needs_review",
        "both_legs_filled",
    )
    errors = read_logs.find("provider_errors", "CLOSE:DLQ")
    assert [e.fields["order_id"] for e in errors] == ["o1"]
    assert (await book.account()).balance == balance  # the second fill moved no money


async def test_report_the_transition_cannot_apply_is_dead_lettered_as_invalid(
    services: Services, bus: InMemoryBus, book: Book, pipeline: Pipeline, read_logs: LogReader
) -> None:
    await book.submit("o1")
    report = ExecutionReport(exec_id="Z1", ord_status=ReportStatus.REJECTED, lifecycle_id="o1-open")
    lifecycle = LifecycleRecord("o1-open", "live:6", "o1", RequestKind.OPEN)
    body = orjson.dumps(
        {"report": report_to_dict(report), "lifecycle": lifecycle_to_dict(lifecycle)}
    )
    await bus.publish(services.queues.worker("open"), body, {"order_id": "o1"})
    await settle(bus)
    [dead] = await pipeline.dead()
    assert (dead.headers[H_REASON], dead.headers[H_ERROR]) == (
        "invalid_transition",
        "not_an_opening_fill",
    )
    assert read_logs.one("worker_open", "OPEN:DLQ").level == "ERROR"


async def test_malformed_worker_message_is_dead_lettered_at_once(
    services: Services, bus: InMemoryBus, pipeline: Pipeline, read_logs: LogReader
) -> None:
    await bus.publish(services.queues.worker("close"), b'{"report": {}}')
    await settle(bus)
    [dead] = await pipeline.dead()
    assert dead.headers[H_REASON] == "malformed_report"
    assert "CLOSE:RETRY" not in read_logs.tags("worker_close")
    assert read_logs.one("worker_close", "CLOSE:FAILED").level == "ERROR"


# -- reference data ------------------------------------------------------------------------------


async def test_account_lost_by_the_state_store_is_loaded_from_the_database(
    services: Services, book: Book, pipeline: Pipeline, read_logs: LogReader
) -> None:
    accepted = await book.submit("o1")
    account_doc = await services.state.get_account("live:6")
    assert account_doc is not None
    await services.database.upsert_accounts(
        [AccountRecord("live:6", account_doc.version, account_doc.data)]
    )
    # The store loses the account (and everything else); reference data and order come back.
    await services.state.flush_all()
    # a store marked complete again (a rebuild ran) that lacks this account; while the
    # marker is missing a fallback waits for the rebuild (test_state_loss.py)
    await mark_complete(services.state)
    await book.reference_data()
    await services.state.commit("live:6", [Write("order", "o1", 0, order_to_dict(accepted.order))])
    await services.state.put_lifecycle("o1-open", lifecycle_to_dict(accepted.lifecycle))

    await pipeline.fill("o1-open", "X1")

    assert (await book.order("o1")).status is OrderStatus.OPEN
    fallback = read_logs.one("worker_open", "OPEN:FALLBACK")
    assert (fallback.level, fallback.fields["what"], fallback.fields["source"]) == (
        "WARNING",
        "account",
        "database",
    )
    assert (await book.account()).used_margin_executed == D("542.52")


async def test_missing_instrument_config_is_retried_then_dead_lettered_with_a_clear_error(
    services: Services, book: Book, pipeline: Pipeline, read_logs: LogReader
) -> None:
    await book.submit("o1")
    await services.state.flush_all()
    await book.reference_data(instruments={"USDJPY": INSTRUMENTS["USDJPY"]})
    await book.add_account()
    await book.submit("o1")
    await pipeline.fill("o1-open", "X1")

    [dead] = await pipeline.dead()
    assert dead.headers[H_REASON] == "max_attempts"
    assert "instrument config is not in the state store" in dead.headers[H_ERROR]
    assert len(read_logs.find("worker_open", "OPEN:RETRY")) == 2
    failed = read_logs.one("worker_open", "OPEN:FAILED")
    assert (failed.fields["error_type"], failed.fields["symbol"]) == (
        "MissingReferenceData",
        "EURUSD",
    )


class FailingOverStore(InMemoryStateStore):
    """A store whose first ``stale`` confirmations find the reads came from a replaced
    master (Redis Cluster after a failover); every confirmation asked is kept."""

    def __init__(self, stale: int) -> None:
        super().__init__()
        self.stale = stale
        self.confirmed: list[tuple[str, str]] = []

    async def confirm_current(self, account_id: str, order_id: str) -> None:
        self.confirmed.append((account_id, order_id))
        if len(self.confirmed) <= self.stale:
            raise StoreError("read from a master replaced meanwhile: read again")


@pytest.fixture
async def failing_over(
    settings: Settings, logs: LogSystem, clock: FakeClock
) -> AsyncIterator[tuple[Services, InMemoryBus, Book, FailingOverStore]]:
    store = FailingOverStore(stale=1)
    bus = InMemoryBus(QueueNames(settings.queue_prefix), clock=clock, ids=SequentialIds("m"))
    async with open_services(
        settings, logs, clock=clock, ids=SequentialIds("trace"), bus=bus, state=store
    ) as services:
        book = Book(services)
        await book.reference_data()
        await book.add_account()
        await mark_complete(store)
        yield services, bus, book, store


async def test_a_refusal_on_reads_from_a_replaced_master_is_read_again_first(
    failing_over: tuple[Services, InMemoryBus, Book, FailingOverStore], read_logs: LogReader
) -> None:
    services, bus, book, store = failing_over
    await book.submit("o1")
    pipeline = Pipeline(services, bus)
    await pipeline.start()
    try:
        await pipeline.fill("o1-open", "X1")  # applied: its write is checked, nothing asked
        assert store.confirmed == []
        report = ExecutionReport(
            exec_id="Z1", ord_status=ReportStatus.REJECTED, lifecycle_id="o1-open"
        )
        lifecycle = LifecycleRecord("o1-open", "live:6", "o1", RequestKind.OPEN)
        body = orjson.dumps(
            {"report": report_to_dict(report), "lifecycle": lifecycle_to_dict(lifecycle)}
        )
        await bus.publish(services.queues.worker("open"), body, {"order_id": "o1"})
        await settle(bus)
    finally:
        await pipeline.stop()
    # the first refusal's reads were a replaced master's: retried, not dead-lettered...
    assert store.confirmed == [("live:6", "o1"), ("live:6", "o1")]
    assert len(read_logs.find("worker_open", "OPEN:RETRY")) == 1
    # ...the second's were current: dead-lettered as the refusal it is
    [dead] = await pipeline.dead()
    assert dead.headers[H_REASON] == "invalid_transition"


# -- concurrency: version conflicts ------------------------------------------------------------


class InterleavingStore(InMemoryStateStore):
    """Yields to the loop after every read, so concurrent handlers read the same versions."""

    async def get_order(self, account_id: str, order_id: str) -> Versioned | None:
        found = await super().get_order(account_id, order_id)
        await asyncio.sleep(0)
        return found

    async def get_account(self, account_id: str) -> Versioned | None:
        found = await super().get_account(account_id)
        await asyncio.sleep(0)
        return found


@pytest.fixture
async def racy(
    settings: Settings, logs: LogSystem, clock: FakeClock
) -> AsyncIterator[tuple[Services, InMemoryBus, Book]]:
    bus = InMemoryBus(QueueNames(settings.queue_prefix), clock=clock, ids=SequentialIds("m"))
    async with open_services(
        settings, logs, clock=clock, ids=SequentialIds("trace"), bus=bus, state=InterleavingStore()
    ) as services:
        book = Book(services)
        await book.reference_data()
        await book.add_account()
        yield services, bus, book


async def test_two_open_worker_instances_on_one_account_lose_no_update(
    racy: tuple[Services, InMemoryBus, Book], read_logs: LogReader
) -> None:
    services, bus, book = racy
    await book.submit("o1")
    await book.submit("o2")
    running = Pipeline(services, bus)
    second_open = Runner(services, worker_consumer(services, "open"), rand=lambda: 0.5)
    running.runners.append(second_open)
    await running.start()
    try:
        for lifecycle_id, exec_id in (("o1-open", "X1"), ("o2-open", "X2")):
            raw = {"type": "8", "lifecycle_id": lifecycle_id, "exec_id": exec_id, "ord_status": "2"}
            raw |= {"cum_qty": "0.5", "avg_px": "1.08502"}
            await bus.publish(services.queues.reports, orjson.dumps(raw))
        await settle(bus)
    finally:
        await running.stop()

    account = await book.account()
    assert {p.order_id for p in account.positions} == {"o1", "o2"}
    # Hedged rule: per-lot margin 1085.03 x 1 lot (each order alone booked 542.52).
    assert account.used_margin_executed == D("1085.03")
    assert account.used_margin_all == D("1085.03")
    assert account.reservations == ()
    assert (await book.order("o1")).status is OrderStatus.OPEN
    assert (await book.order("o2")).status is OrderStatus.OPEN
    conflicts = read_logs.find("worker_open", "OPEN:VERSION_CONFLICT")
    assert len(conflicts) == 1
    successes = read_logs.find("worker_open", "OPEN:SUCCESS")
    assert sorted(s.fields.get("version_conflicts", "0") for s in successes) == ["0", "1"]
    assert await drain(bus, bus.dlq_name) == []


async def test_one_worker_takes_turns_on_an_account_instead_of_conflicting(
    racy: tuple[Services, InMemoryBus, Book], read_logs: LogReader
) -> None:
    services, bus, book = racy
    assert services.settings.concurrency > 1  # both reports are handled at once
    await book.submit("o1")
    await book.submit("o2")
    running = Pipeline(services, bus)
    await running.start()
    try:
        for lifecycle_id, exec_id in (("o1-open", "X1"), ("o2-open", "X2")):
            raw = {"type": "8", "lifecycle_id": lifecycle_id, "exec_id": exec_id, "ord_status": "2"}
            raw |= {"cum_qty": "0.5", "avg_px": "1.08502"}
            await bus.publish(services.queues.reports, orjson.dumps(raw))
        await settle(bus)
    finally:
        await running.stop()

    account = await book.account()
    assert {p.order_id for p in account.positions} == {"o1", "o2"}
    assert account.used_margin_executed == D("1085.03")
    # the second handler waited for the first one's commit: it never read a stale account
    assert read_logs.find("worker_open", "OPEN:VERSION_CONFLICT") == []
    assert len(read_logs.find("worker_open", "OPEN:SUCCESS")) == 2


async def test_sl_and_tp_acks_on_one_order_at_once_lose_no_update(
    racy: tuple[Services, InMemoryBus, Book], read_logs: LogReader
) -> None:
    services, bus, book = racy
    await book.submit("o1", sl=SL, tp=TP)
    running = Pipeline(services, bus)
    await running.start()
    try:
        await running.fill("o1-open", "X1")
        await bus.publish(
            services.queues.reports,
            orjson.dumps(
                {"type": "8", "lifecycle_id": "o1-sl-1", "exec_id": "S1", "ord_status": "0"}
            ),
        )
        await bus.publish(
            services.queues.reports,
            orjson.dumps(
                {"type": "8", "lifecycle_id": "o1-tp-1", "exec_id": "T1", "ord_status": "0"}
            ),
        )
        await settle(bus)
    finally:
        await running.stop()
    order = await book.order("o1")
    assert (order.sl.state, order.tp.state) == (LegState.ACTIVE, LegState.ACTIVE)
    assert {"S1", "T1", "X1"} <= set(order.applied_exec_ids)
    tags = read_logs.tags("worker_stoploss") + read_logs.tags("worker_takeprofit")
    assert tags.count("STOPLOSS:VERSION_CONFLICT") + tags.count("TAKEPROFIT:VERSION_CONFLICT") == 1


# -- crashes between commit and publish -----------------------------------------------------------


async def test_publish_failure_after_commit_is_retried_and_republishes_the_effects(
    monkeypatch: pytest.MonkeyPatch,
    services: Services,
    bus: InMemoryBus,
    book: Book,
    pipeline: Pipeline,
    read_logs: LogReader,
) -> None:
    await book.submit("o1", sl=SL)
    real_publish = bus.publish
    failures = [BusError("publish not confirmed: connection lost")]

    async def flaky_publish(
        queue: str,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        message_id: str | None = None,
    ) -> str:
        if queue == services.queues.db_updates and failures:
            raise failures.pop()
        return await real_publish(queue, body, headers, message_id)

    monkeypatch.setattr(bus, "publish", flaky_publish)
    await pipeline.fill("o1-open", "X1")

    assert (await book.account()).used_margin_executed == D("542.52")  # applied once
    [event] = await pipeline.db_events()
    assert event.message_id == "o1:X1:ORDER_OPENED"
    # The effects are published together: the SL request went out beside the failed DB
    # event, and again on the retry, as the same request (same lifecycle id = message id,
    # which the LP adapter drops as a copy).
    requests = await pipeline.requests()
    assert [r["kind"] for r in requests] == ["PLACE_SL", "PLACE_SL"]
    assert len({r["lifecycle_id"] for r in requests}) == 1
    assert read_logs.tags("worker_open").count("OPEN:RETRY") == 1
    assert read_logs.one("worker_open", "OPEN:SKIP:DUPLICATE").fields["republished_db"] == "1"
    assert "OPEN:SUCCESS" not in read_logs.tags("worker_open")


async def test_shutdown_between_commit_and_publish_loses_nothing_after_restart(
    monkeypatch: pytest.MonkeyPatch,
    services: Services,
    bus: InMemoryBus,
    book: Book,
    read_logs: LogReader,
) -> None:
    await book.submit("o1")
    real_publish = bus.publish
    hang = asyncio.Event()

    async def hanging_publish(
        queue: str,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        message_id: str | None = None,
    ) -> str:
        if queue == services.queues.db_updates:
            hang.set()
            await asyncio.Event().wait()  # the broker never confirms: the process dies here
        return await real_publish(queue, body, headers, message_id)

    monkeypatch.setattr(bus, "publish", hanging_publish)
    first = Pipeline(services, bus)
    await first.start()
    await bus.publish(
        services.queues.reports,
        orjson.dumps(
            {"type": "8", "lifecycle_id": "o1-open", "exec_id": "X1", "ord_status": "2"}
            | {"cum_qty": "0.5", "avg_px": "1.08502"}
        ),
    )
    await hang.wait()
    assert (await book.order("o1")).status is OrderStatus.OPEN  # committed, not published
    await first.stop(timeout_s=0.05)  # the drain gives up: the publish never returns
    assert bus.pending()[services.queues.worker("open")] == (1, 0, 0)  # back in its queue

    monkeypatch.setattr(bus, "publish", real_publish)
    second = Pipeline(services, bus)
    await second.start()
    await settle(bus)
    await second.stop()

    [event] = await drain(bus, services.queues.db_updates)
    assert event.message_id == "o1:X1:ORDER_OPENED"
    assert (await book.account()).used_margin_executed == D("542.52")
    assert read_logs.one("worker_open", "OPEN:SKIP:DUPLICATE").fields["republished_db"] == "1"
    assert "OPEN:SUCCESS" not in read_logs.tags("worker_open")
    assert await drain(bus, bus.dlq_name) == []
