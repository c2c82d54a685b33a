"""The db writer and the audit chain: one chain per account whatever the number of writers,
and an event that cannot be chained is dead-lettered instead of blocking its batch."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import orjson
import pytest

from execflow.backends.memory_bus import InMemoryBus
from execflow.domain.codec import effect_to_dict
from execflow.domain.effects import DbEvent, EventKind
from execflow.logs import setup_logging
from execflow.pipeline.audit import verify_chains
from execflow.pipeline.dbwriter import DbWriter, db_writer_spec
from execflow.pipeline.runner import Runner
from execflow.pipeline.services import Services, open_services
from execflow.settings import Settings
from tests.pipeline.conftest import drain


def db_event(n: int, account_id: str, payload: dict[str, object] | None = None) -> DbEvent:
    return DbEvent(
        event_id=f"o{n}:x{n}:ORDER_OPENED",
        kind=EventKind.ORDER_OPENED,
        account_id=account_id,
        order_id=f"o{n}",
        exec_id=f"x{n}",
        payload=payload
        or {
            "order": {"order_id": f"o{n}", "status": "OPEN", "version": 1},
            "account": {"account_id": account_id, "balance": "100.00", "version": n},
            "deltas": {"balance": f"-{n}.00"},
            "report": None,
        },
    )


Writer = tuple[Services, DbWriter, Runner]


@asynccontextmanager
async def writers_on_rabbitmq(
    settings: Settings, pg_url: str, tmp_path: Path, count: int, prefix: str, batch_size: int
) -> AsyncIterator[list[Writer]]:
    """``count`` db writers, each with services of its own, sharing one RabbitMQ queue and
    one PostgreSQL database; their runners not started. At the end: stopped, closed, and
    the queues deleted."""
    from tests.backends.conftest import delete_queues
    from tests.services import AMQP_URL

    real = settings.model_copy(
        update={
            "broker_url": AMQP_URL,
            "database_url": pg_url,
            "queue_prefix": f"{prefix}.{uuid.uuid4().hex[:10]}",
            "db_batch_size": batch_size,
            "db_batch_timeout_s": 0.01,
        }
    )
    declared: set[str] = set()
    try:
        async with AsyncExitStack() as stack:
            writers: list[Writer] = []
            for instance in range(1, count + 1):
                logs = stack.enter_context(
                    setup_logging(
                        real.model_copy(
                            update={"instance": instance, "log_dir": tmp_path / "logs"}
                        ),
                        "db_writer",
                        bridge=False,
                    )
                )
                services = await stack.enter_async_context(open_services(real, logs))
                writer = DbWriter(services)
                writers.append(
                    (services, writer, Runner(services, db_writer_spec(services, writer)))
                )
            try:
                yield writers
            finally:
                for services, writer, runner in writers:
                    await runner.stop()
                    await writer.close()
                    declared.update(getattr(services.bus, "declared_queues", ()))
    finally:
        await delete_queues(declared)


async def all_written(first: Services, count: int) -> None:
    """Wait (60 s at most) until ``count`` events are stored and the shared queue is empty."""
    async with asyncio.timeout(60):
        # polled: the writers share a broker queue, no event says "all written"
        while await first.database.count_events() < count:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        while await first.bus.queue_depth(first.queues.db_updates) > 0:  # noqa: ASYNC110
            await asyncio.sleep(0.1)


async def written_stats(writers: list[Writer], count: int) -> list[dict[str, int]]:
    """The writers' stats once they count ``count`` inserted events (10 s at most).

    A writer counts a batch when ``write_batch`` returns, a little after the commit that
    ``all_written`` saw, so right after it the last batch may not be counted yet.
    """
    async with asyncio.timeout(10):
        while True:
            stats = [w.log.stats.snapshot() for _, w, _ in writers]
            if sum(s.get("events_inserted", 0) for s in stats) >= count:
                return stats
            await asyncio.sleep(0.05)


async def publish(services: Services, events: list[DbEvent]) -> None:
    for event in events:
        await services.bus.publish(
            services.queues.db_updates,
            orjson.dumps(effect_to_dict(event)),
            {"order_id": event.order_id},
            event.event_id,
        )


async def test_an_unchainable_event_is_dead_lettered_and_the_rest_written(
    services: Services,
) -> None:
    odd = db_event(2, "live:6", {"n": 2**60, "f": 0.5})  # no RFC 8785 form
    await publish(services, [db_event(1, "live:6"), odd, db_event(3, "live:6")])
    writer = DbWriter(services)
    runner = Runner(services, db_writer_spec(services, writer))
    await runner.start()
    assert isinstance(services.bus, InMemoryBus)
    await services.bus.join(services.queues.db_updates, timeout_s=10)
    await runner.stop()
    await writer.close()
    [dead] = await drain(services.bus, services.bus.dlq_name)
    assert dead.message_id == odd.event_id
    assert await services.database.count_events() == 2
    report = await verify_chains(services.database)
    assert (report.ok, report.events) == (True, 2)


@pytest.mark.integration
async def test_three_db_writers_on_one_rabbitmq_queue_keep_one_chain_per_account(
    settings: Settings, pg_url: str, tmp_path: Path
) -> None:
    events = [db_event(n, f"live:{n % 4}") for n in range(600)]
    async with writers_on_rabbitmq(settings, pg_url, tmp_path, 3, "efaudit", 25) as writers:
        first = writers[0][0]
        # every event once, then a third of them again (a redelivery after a crash)
        await publish(first, [*events, *events[::3]])
        for _, _, runner in writers:
            await runner.start()
        await all_written(first, len(events))
        batches = [s.get("batches", 0) for s in await written_stats(writers, len(events))]
        assert sum(1 for b in batches if b) >= 2, batches  # the writers really shared the work
        report = await verify_chains(first.database)
        assert (report.ok, report.accounts, report.events) == (True, 4, 600)
        assert sorted(h.length for h in report.heads) == [150, 150, 150, 150]
