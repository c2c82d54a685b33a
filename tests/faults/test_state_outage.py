"""State-store outages on the in-memory backends (what the Redis fault test found).

* An outage (``StoreError`` itself: the store unreachable) is retried with backoff for
  as long as it lasts and never dead-lettered; a real failure (any other exception, or
  a ``StoreError`` subclass such as ``MissingReferenceData``) still is, after the
  attempts. (A ``VersionConflict`` is contention: ``tests/pipeline/test_runner.py``.)
* After a store error, the runner checks the store's marker before the next message: a
  store that came back empty is rebuilt from the database first (``STATE:FALLBACK``
  ``reason=state_store_reset`` then ``STATE:REBUILT``), so nothing is dead-lettered as
  an unknown lifecycle or a missing order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from execflow.backends.bus import H_REASON, Message, QueueNames
from execflow.backends.memory_bus import InMemoryBus
from execflow.backends.memory_state import InMemoryStateStore
from execflow.errors import StoreError
from execflow.logs import LogSystem, setup_logging
from execflow.pipeline.rebuild import STATE_MARKER, rebuild_after_outage
from execflow.pipeline.refdata import MissingReferenceData
from execflow.pipeline.results import Ack, HandlerResult
from execflow.pipeline.runner import ConsumerSpec, Runner
from execflow.pipeline.services import Services, open_services
from execflow.settings import Settings
from tests.pipeline.flow import ASK, QTY, SEED_FILE, USER, Flow


@pytest.fixture
def outage_settings(tmp_path: Path) -> Settings:
    return Settings(
        log_dir=tmp_path / "logs",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'outage.db'}",
        retry_max_attempts=3,
        retry_base_delay_s=0.001,
        retry_max_delay_s=0.004,
        retry_jitter=0.0,
        shutdown_timeout_s=2.0,
        seed_file=SEED_FILE,
    )


class FlakyState(InMemoryStateStore):
    """An in-memory store whose lifecycle reads fail while ``down`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.failed = 0

    async def get_lifecycle(self, lifecycle_id: str) -> dict[str, Any] | None:
        if self.down:
            self.failed += 1
            raise StoreError("Redis unreachable: get_lifecycle failed after 3 attempts")
        return await super().get_lifecycle(lifecycle_id)


@pytest.fixture
def outage_logs(outage_settings: Settings) -> Iterator[LogSystem]:
    with setup_logging(outage_settings, "supervisor", bridge=False) as logs:
        yield logs


@pytest.fixture
async def outage_services(
    outage_settings: Settings, outage_logs: LogSystem
) -> AsyncIterator[Services]:
    bus = InMemoryBus(QueueNames(outage_settings.queue_prefix), crash_requeue_delay_s=0.002)
    async with open_services(outage_settings, outage_logs, bus=bus, state=FlakyState()) as opened:
        yield opened


def _lines(logs: LogSystem, name: str) -> list[str]:
    assert logs.flush()
    path = logs.directory / f"{name}.log"
    return path.read_text().splitlines() if path.exists() else []


async def _run_once(services: Services, handler: Any, tag: str = "T") -> list[Message]:
    """One message through a runner with ``handler``; returns what ended in the DLQ."""
    bus = services.bus
    assert isinstance(bus, InMemoryBus)
    queue = services.queues.name("outage.test")
    spec = ConsumerSpec(
        component="dispatcher",
        queue=queue,
        handler=handler,
        tag=tag,
        prefetch=1,
        concurrency=1,
        retry=_policy(services),
    )
    runner = Runner(services, spec, rand=lambda: 0.5)
    await runner.start()
    await bus.publish(queue, b"{}", message_id="m1")
    await bus.join(queue, timeout_s=10)
    await runner.stop()
    dead = []
    while (delivery := await bus.get(bus.dlq_name)) is not None:
        dead.append(delivery.message)
        await delivery.ack()
    return dead


def _policy(services: Services) -> Any:
    from execflow.pipeline.retry import retry_policy

    return retry_policy(services.settings)


async def test_an_outage_is_retried_past_max_attempts_and_never_dead_lettered(
    outage_services: Services, outage_logs: LogSystem
) -> None:
    calls = 0

    async def handler(_message: Message) -> HandlerResult:
        nonlocal calls
        calls += 1
        if calls <= 10:  # > retry_max_attempts (3)
            raise StoreError("Redis unreachable: get_order failed after 3 attempts")
        return Ack("T:SUCCESS", {})

    assert await _run_once(outage_services, handler) == []
    assert calls == 11
    retries = [line for line in _lines(outage_logs, "dispatcher") if "[T:RETRY]" in line]
    assert len(retries) == 10 and all("outage=true" in line for line in retries)
    assert any("[T:SUCCESS]" in line for line in _lines(outage_logs, "dispatcher"))


@pytest.mark.parametrize(
    "error", [RuntimeError("boom"), MissingReferenceData("no instrument config", key="k")], ids=repr
)
async def test_other_errors_still_reach_the_dlq_after_max_attempts(
    outage_services: Services, error: Exception
) -> None:
    calls = 0

    async def handler(_message: Message) -> HandlerResult:
        nonlocal calls
        calls += 1
        raise error

    dead = await _run_once(outage_services, handler)
    assert calls == 3
    assert [m.headers[H_REASON] for m in dead] == ["max_attempts"]


async def test_a_store_that_came_back_empty_is_rebuilt_before_the_next_message(
    outage_services: Services, outage_logs: LogSystem
) -> None:
    state = outage_services.state
    assert isinstance(state, FlakyState)
    async with Flow.running(outage_services) as flow:
        assert await state.get_lifecycle(STATE_MARKER) is not None  # marked at start
        first = await flow.opened()
        second = await flow.open_request()
        await flow.settle()
        # Redis restarts without persistence: everything is gone, and unreachable a while
        await state.flush_all()
        state.down = True
        await flow.report(second.lifecycle_id, "EXECUTED", qty=QTY, px=ASK, settle=False)
        async with asyncio.timeout(10):
            while state.failed < 3:  # noqa: ASYNC110 - the dispatcher retries on its own
                await asyncio.sleep(0.005)
        state.down = False
        await flow.settle()
        bus = outage_services.bus
        assert await bus.queue_depth(bus.dlq_name) == 0
        order = await flow.order(second.order_id)
        assert order.status.value == "OPEN"
        assert (await flow.order(first.order_id)).status.value == "OPEN"
    dispatcher = _lines(outage_logs, "dispatcher")
    assert any("[STATE:FALLBACK]" in line and "state_store_reset" in line for line in dispatcher)
    assert any("[STATE:REBUILT]" in line for line in dispatcher)
    assert any("[DISPATCH:RETRY]" in line and "outage=true" in line for line in dispatcher)
    assert await state.get_lifecycle(STATE_MARKER) is not None


async def test_rebuild_after_outage_does_nothing_when_the_store_kept_its_marker(
    outage_services: Services, outage_logs: LogSystem
) -> None:
    async with Flow.running(outage_services) as flow:
        await flow.opened()
        log = outage_logs.logger("supervisor")
        assert (
            await rebuild_after_outage(
                outage_services.state, outage_services.database, SEED_FILE, log
            )
            is None
        )
        await outage_services.state.flush_all()
        report = await rebuild_after_outage(
            outage_services.state, outage_services.database, SEED_FILE, log
        )
        assert report is not None and report.orders == 1 and report.lifecycles >= 1
        assert USER in await outage_services.state.list_accounts()


async def test_after_a_state_loss_one_process_rebuilds_and_the_others_wait_for_it(
    outage_services: Services, outage_logs: LogSystem
) -> None:
    async with Flow.running(outage_services) as flow:
        await flow.opened()
    state, database = outage_services.state, outage_services.database
    await state.flush_all()
    logs = [outage_logs.logger(name) for name in ("worker_open", "worker_close", "dispatcher")]
    reports = await asyncio.gather(
        *(rebuild_after_outage(state, database, SEED_FILE, log) for log in logs)
    )
    assert sum(report is not None for report in reports) == 1
    lines = [
        line
        for name in ("worker_open", "worker_close", "dispatcher")
        for line in _lines(outage_logs, name)
    ]
    assert sum("[STATE:REBUILT]" in line for line in lines) == 1
    assert sum("[STATE:REBUILT_BY_PEER]" in line for line in lines) == 2
    assert await state.get_lifecycle(STATE_MARKER) is not None
