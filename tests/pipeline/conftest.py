"""Fixtures for pipeline tests: Services on the in-memory backends, logs in tmp_path.

Time and ids are fakes (``FakeClock``, ``SequentialIds``); retry and park delays are
milliseconds so backoff runs for real but fast. State is seeded through the pure intake
rules of ``execflow.domain.intake`` (``Book``), never by hand-built documents.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from execflow.backends.bus import Bus, Message, QueueNames
from execflow.backends.memory_bus import InMemoryBus
from execflow.backends.state import Write
from execflow.clock import FakeClock, SequentialIds
from execflow.domain import intake
from execflow.domain.codec import (
    account_from_dict,
    account_to_dict,
    instrument_to_dict,
    lifecycle_to_dict,
    order_from_dict,
    order_to_dict,
)
from execflow.domain.enums import OrderType, Side
from execflow.domain.models import Account, InstrumentConfig, Order, Prices
from execflow.logs import LogSystem, setup_logging
from execflow.logtools.record import LogRecord, parse_line
from execflow.pipeline.dispatcher import dispatcher_consumer
from execflow.pipeline.runner import Runner
from execflow.pipeline.services import Services, open_services
from execflow.pipeline.workers import worker_consumers
from execflow.settings import Settings
from tests.domain.factories import INSTRUMENTS, NOW, PRICES, account

D = Decimal
HALF_LOT = D("0.5")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Fast retries (ms), few attempts, DEBUG logs in tmp_path, SQLite in tmp_path."""
    return Settings(
        log_dir=tmp_path / "logs",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'execflow.db'}",
        log_level="DEBUG",
        retry_max_attempts=3,
        retry_base_delay_s=0.001,
        retry_max_delay_s=0.004,
        retry_jitter=0.0,
        park_max_attempts=3,
        prefetch=8,
        concurrency=4,
        shutdown_timeout_s=2.0,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def logs(settings: Settings, clock: FakeClock) -> Iterator[LogSystem]:
    system = setup_logging(settings, "dispatcher", clock=clock, bridge=False)
    yield system
    system.close()


@pytest.fixture
def bus(settings: Settings, clock: FakeClock) -> InMemoryBus:
    return InMemoryBus(
        QueueNames(settings.queue_prefix),
        prefetch=settings.prefetch,
        clock=clock,
        ids=SequentialIds("msg"),
        crash_requeue_delay_s=0.002,
    )


@pytest.fixture
async def services(
    settings: Settings, logs: LogSystem, clock: FakeClock, bus: InMemoryBus
) -> AsyncIterator[Services]:
    async with open_services(
        settings, logs, clock=clock, ids=SequentialIds("trace"), bus=bus
    ) as opened:
        yield opened


class LogReader:
    """Reads the log files back from disk (after a flush) as parsed records."""

    def __init__(self, logs: LogSystem) -> None:
        self.logs = logs

    def path(self, name: str) -> Path:
        return self.logs.directory / f"{name}.log"

    def lines(self, name: str) -> list[str]:
        assert self.logs.flush(), "log writer did not flush"
        path = self.path(name)
        if not path.exists():
            return []
        return path.read_text(encoding="utf-8").splitlines()

    def records(self, name: str) -> list[LogRecord]:
        out = []
        for line in self.lines(name):
            record = parse_line(line, name)
            assert record is not None, f"unparseable line in {name}: {line!r}"
            out.append(record)
        return out

    def tags(self, name: str) -> list[str]:
        return [r.tag for r in self.records(name)]

    def find(self, name: str, tag: str) -> list[LogRecord]:
        return [r for r in self.records(name) if r.tag == tag]

    def one(self, name: str, tag: str) -> LogRecord:
        found = self.find(name, tag)
        assert len(found) == 1, f"{tag}: {len(found)} lines in {name}: {self.tags(name)}"
        return found[0]

    def line(self, name: str, tag: str) -> str:
        """The raw text of the single ``tag`` line (for copying into reports)."""
        matching = [line for line in self.lines(name) if f"[{tag}]" in line]
        assert len(matching) == 1, matching
        return matching[0]

    def calculations(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.lines("orders_calculated")]


@pytest.fixture
def read_logs(logs: LogSystem) -> LogReader:
    return LogReader(logs)


async def drain(bus: Bus, queue: str) -> list[Message]:
    """Take (and ack) every ready message of ``queue``."""
    taken = []
    while (delivery := await bus.get(queue)) is not None:
        taken.append(delivery.message)
        await delivery.ack()
    return taken


async def settle(bus: InMemoryBus, timeout_s: float = 10.0) -> None:
    """Wait until every consumed queue is idle (re-raises handler crashes)."""
    await bus.join(timeout_s=timeout_s)


async def spin(rounds: int = 20) -> None:
    """Let every ready task run a few steps (no wall-clock wait)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


class Book:
    """Seeds and reads the state store through the pure domain rules."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.state = services.state
        self.now = NOW
        self._ids = SequentialIds("o")

    async def reference_data(
        self, instruments: dict[str, InstrumentConfig] | None = None, prices: Prices = PRICES
    ) -> None:
        for instrument in (instruments or INSTRUMENTS).values():
            await self.state.put_instrument(
                instrument.group, instrument.symbol, instrument_to_dict(instrument)
            )
        for symbol, quote in prices.quotes.items():
            await self.state.put_price(symbol, {"bid": str(quote.bid), "ask": str(quote.ask)})

    async def add_account(self, **changes: Any) -> Account:
        acc = account(**changes)
        await self.state.commit(
            acc.account_id, [Write("account", acc.account_id, 0, account_to_dict(acc))]
        )
        return acc

    async def order(self, order_id: str, account_id: str = "live:6") -> Order:
        doc = await self.state.get_order(account_id, order_id)
        assert doc is not None, order_id
        return order_from_dict(doc.data)

    async def account(self, account_id: str = "live:6") -> Account:
        doc = await self.state.get_account(account_id)
        assert doc is not None, account_id
        return account_from_dict(doc.data)

    async def take(self, result: intake.IntakeDecision) -> intake.Accepted:
        """Write an accepted intake result like the intake does: state, then lifecycle."""
        assert isinstance(result, intake.Accepted), result
        order_doc = await self.state.get_order(result.order.account_id, result.order.order_id)
        account_doc = await self.state.get_account(result.account.account_id)
        assert account_doc is not None
        writes = [
            Write(
                "order",
                result.order.order_id,
                0 if order_doc is None else order_doc.version,
                order_to_dict(result.order),
            ),
            Write(
                "account",
                result.account.account_id,
                account_doc.version,
                account_to_dict(result.account),
            ),
        ]
        await self.state.commit(result.account.account_id, writes)
        await self.state.put_lifecycle(
            result.lifecycle.lifecycle_id, lifecycle_to_dict(result.lifecycle)
        )
        return result

    async def submit(
        self,
        order_id: str = "o1",
        *,
        symbol: str = "EURUSD",
        side: Side = Side.BUY,
        order_type: OrderType = OrderType.MARKET,
        qty: Decimal = HALF_LOT,
        price: Decimal | None = None,
        sl: Decimal | None = None,
        tp: Decimal | None = None,
        account_id: str = "live:6",
    ) -> intake.Accepted:
        new = intake.NewOrder(account_id, symbol, side, order_type, qty, price, sl, tp)
        result = intake.submit_order(
            new,
            await self.account(account_id),
            INSTRUMENTS.get(symbol),
            PRICES,
            order_id,
            f"{order_id}-open",
            self.now,
        )
        return await self.take(result)

    async def close(self, order_id: str = "o1", lifecycle_id: str | None = None) -> intake.Accepted:
        order = await self.order(order_id)
        lifecycle_id = lifecycle_id or f"{order_id}-close"
        acc = await self.account(order.account_id)
        result = intake.request_close(order, acc, lifecycle_id, self.now)
        return await self.take(result)

    async def cancel(self, order_id: str = "o1") -> intake.Accepted:
        order = await self.order(order_id)
        result = intake.cancel_pending(
            order, await self.account(order.account_id), f"{order_id}-cancel", self.now
        )
        return await self.take(result)

    async def modify(self, order_id: str, new_price: Decimal) -> intake.Accepted:
        order = await self.order(order_id)
        result = intake.modify_pending(
            order,
            await self.account(order.account_id),
            INSTRUMENTS[order.symbol],
            PRICES,
            new_price,
            f"{order_id}-modify",
            self.now,
        )
        return await self.take(result)

    async def overwrite_order(self, order: Order) -> None:
        """Replace an order document as it is (test set-up of odd states)."""
        doc = await self.state.get_order(order.account_id, order.order_id)
        version = 0 if doc is None else doc.version
        await self.state.commit(
            order.account_id, [Write("order", order.order_id, version, order_to_dict(order))]
        )


@pytest.fixture
async def book(services: Services) -> Book:
    """Reference data (instruments, prices) and the account ``live:6`` (10 000 USD)."""
    seeded = Book(services)
    await seeded.reference_data()
    await seeded.add_account()
    return seeded


def report_bytes(lifecycle_id: str | None, exec_id: str, status: str, **extra: Any) -> bytes:
    """A JSON execution report as the LP sends it (decimals as strings)."""
    data: dict[str, Any] = {"type": "8", "exec_id": exec_id, "ord_status": status}
    if lifecycle_id is not None:
        data["lifecycle_id"] = lifecycle_id
    data.update({k: str(v) for k, v in extra.items()})
    return orjson.dumps(data)


class Pipeline:
    """The dispatcher and the seven workers, each on its own runner, on one Services."""

    def __init__(self, services: Services, bus: InMemoryBus) -> None:
        self.services = services
        self.bus = bus
        specs = [dispatcher_consumer(services), *worker_consumers(services)]
        self.runners = [Runner(services, spec, rand=lambda: 0.5) for spec in specs]

    async def start(self) -> None:
        for runner in self.runners:
            await runner.start()

    async def stop(self, timeout_s: float | None = None) -> None:
        for runner in self.runners:
            await runner.stop(timeout_s)

    async def send(self, lifecycle_id: str, exec_id: str, status: str, **extra: Any) -> None:
        """Publish one LP report and wait until the pipeline is idle again."""
        raw = report_bytes(lifecycle_id, exec_id, status, **extra)
        await self.bus.publish(self.services.queues.reports, raw)
        await settle(self.bus)

    async def fill(
        self, lifecycle_id: str, exec_id: str, qty: str = "0.5", px: str = "1.08502"
    ) -> None:
        await self.send(lifecycle_id, exec_id, "EXECUTED", cum_qty=qty, avg_px=px)

    async def sent(self, queue: str) -> list[dict[str, Any]]:
        """Bodies published to ``queue`` so far (taken off the queue)."""
        return [orjson.loads(m.body) for m in await drain(self.bus, queue)]

    async def requests(self) -> list[dict[str, Any]]:
        return await self.sent(self.services.queues.provider_requests)

    async def db_events(self) -> list[Message]:
        return await drain(self.bus, self.services.queues.db_updates)

    async def dead(self) -> list[Message]:
        return await drain(self.bus, self.bus.dlq_name)


@pytest.fixture
async def pipeline(services: Services, bus: InMemoryBus) -> AsyncIterator[Pipeline]:
    running = Pipeline(services, bus)
    await running.start()
    yield running
    await running.stop()


# -- real backends (RabbitMQ + Redis + PostgreSQL), for the integration end-to-end tests -----
# The servers are shared: each test gets its own queue prefix, Redis key prefix and
# PostgreSQL database, all removed at the end. (Imports are local: appended fixtures.)


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh PostgreSQL database; skips (or fails in CI) when a server is down."""
    from tests.backends.conftest import fresh_pg_database
    from tests.services import need_service

    for name in ("rabbitmq", "redis", "postgresql"):
        need_service(name)
    async with fresh_pg_database() as url:
        yield url


@pytest.fixture
def real_settings(settings: Settings, pg_url: str) -> Settings:
    """``settings`` on RabbitMQ, Redis and PostgreSQL, under unique names."""
    import uuid

    from tests.services import AMQP_URL, REDIS_URL

    tag = uuid.uuid4().hex[:10]
    return settings.model_copy(
        update={
            "broker_url": AMQP_URL,
            "state_url": f"{REDIS_URL}?key_prefix=efe2e{tag}",
            "database_url": pg_url,
            "queue_prefix": f"efe2e.{tag}",
            "retry_base_delay_s": 0.05,
            "park_max_attempts": 8,
        }
    )


@pytest.fixture
async def real_services(real_settings: Settings, logs: LogSystem) -> AsyncIterator[Services]:
    """Services on the real servers; Redis keys and queues are removed at the end: the
    queues this process declared, and every pipeline queue of the prefix and its delay
    queues, which the tests' ``execflow run`` processes declare on their own."""
    from execflow.backends.bus import QueueNames
    from execflow.backends.rabbitmq import RabbitMQBus
    from execflow.backends.rabbitmq_queues import delay_queue_names
    from tests.backends.conftest import delete_queues

    async with open_services(real_settings, logs) as opened:
        try:
            yield opened
        finally:
            await opened.state.flush_all()
            assert isinstance(opened.bus, RabbitMQBus)
            declared = set(opened.bus.declared_queues)
    queues = QueueNames(real_settings.queue_prefix).all()
    await delete_queues(declared | {*queues, *delay_queue_names(queues)})
