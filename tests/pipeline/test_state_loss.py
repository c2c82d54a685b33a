"""A state store that loses everything mid-stream never leaves state and database apart.

Each test replays, step by step and without timing luck, one way a Redis restart
without persistence could make the rebuilt state disagree with the database
(docs/state-rebuild.md tells the whole chain as it was seen in a fault-test run):

* a fill committed to the store whose DB event was not yet published when the store went
  away, while another action on the same account committed on top of it and published
  an account snapshot that already held the fill;
* a DB event published (and its report acknowledged) but still on its way to the
  database when the rebuild read it;
* an account cached back from the database while the store was still being rebuilt.

Each runs on the in-memory store and on Redis (marked ``integration``, under a key prefix
of its own; only that prefix is ever wiped).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest

from execflow.backends.database import BatchCounts
from execflow.backends.memory_bus import InMemoryBus
from execflow.backends.memory_state import InMemoryStateStore
from execflow.backends.redis_state import RedisStateStore
from execflow.backends.state import StateStore
from execflow.clock import FakeClock, SequentialIds
from execflow.domain.codec import lifecycle_to_dict, report_to_dict
from execflow.domain.enums import OrderStatus, RequestKind
from execflow.domain.messages import ExecutionReport
from execflow.domain.models import LifecycleRecord
from execflow.domain.reports import parse_message
from execflow.domain.routing import Worker
from execflow.errors import StoreError
from execflow.logs import LogSystem
from execflow.pipeline.completeness import REBUILD_CLAIM, mark_complete
from execflow.pipeline.reconcile import reconcile
from execflow.pipeline.refdata import load_account
from execflow.pipeline.services import Services, open_services
from execflow.settings import Settings
from tests.backends.conftest import unique
from tests.pipeline.conftest import LogReader
from tests.pipeline.flow import ASK, BID, QTY, SEED_FILE, SL, SYMBOL, TP, USER, Flow
from tests.services import REDIS_URL, need_service

_WAIT_S = 10.0


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Instruments and prices come back from the seed file after the store is wiped."""
    return settings.model_copy(update={"seed_file": SEED_FILE})


class StoreGoesAway:
    """Wraps a state store: the first registration of a ``kind`` request hangs, then fails.

    It plays Redis going away right after a worker's commit: the commit landed, the
    registration of the follow-up request (the first store call after it) is the one
    that sees the outage.
    """

    def __init__(self, inner: StateStore, kind: RequestKind) -> None:
        self.inner = inner
        self.kind = kind
        self.reached = asyncio.Event()
        self.release = asyncio.Event()
        self._armed = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def put_lifecycle(self, lifecycle_id: str, data: dict[str, Any]) -> bool:
        if self._armed and data.get("kind") == self.kind.value:
            self._armed = False
            self.reached.set()
            await self.release.wait()
            raise StoreError("Redis unreachable: put_lifecycle (injected)")
        return await self.inner.put_lifecycle(lifecycle_id, data)


class HeldWriter:
    """Holds the db writer's batch writes until released (the writer falls behind)."""

    def __init__(self, write: Callable[..., Awaitable[BatchCounts]]) -> None:
        self._write = write
        self.holding = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()

    def hold(self) -> None:
        self.release.clear()

    async def write_batch(self, *batch: Sequence[Any]) -> BatchCounts:
        if not self.release.is_set():
            self.holding.set()
            await self.release.wait()
        return await self._write(*batch)


async def _until(check: Callable[[], Awaitable[bool]]) -> None:
    async with asyncio.timeout(_WAIT_S):
        while not await check():  # noqa: ASYNC110 - another component's state, no event to wait on
            await asyncio.sleep(0.005)


async def _assert_books_agree(services: Services) -> None:
    report = await reconcile(services.database, services.state)
    assert report.ok, report.differences


@asynccontextmanager
async def _running(services: Services) -> AsyncIterator[Flow]:
    async with Flow.running(services) as flow:
        yield flow


async def scenario_fill_lost_under_a_later_snapshot(
    services: Services, store: StoreGoesAway
) -> None:
    """The chain of the fault-test run (issue 11, defect 8), on ``services``."""
    async with _running(services) as flow:
        # X: a BUY with both legs active; its SL fill will ask the LP to cancel the TP
        x = await flow.opened(sl=SL, tp=TP)
        for kind in (RequestKind.PLACE_SL, RequestKind.PLACE_TP):
            leg = flow.request(kind, x.order_id)
            level = leg["stop_px"] or leg["price"]
            await flow.report(leg["lifecycle_id"], "PENDING", level=level)
        y = await flow.opened()  # Y: a second position of the same account
        balance_before = (await flow.account()).balance

        sl_fill = flow.request(RequestKind.PLACE_SL, x.order_id)["lifecycle_id"]
        await flow.report(sl_fill, "EXECUTED", qty=QTY, px=BID, settle=False)
        # the close worker committed X CLOSED and the account; the store goes away now
        async with asyncio.timeout(_WAIT_S):
            await store.reached.wait()
        # before it did, the intake committed on top: its event carries an account
        # snapshot that already holds X's close (the store answered the intake in time)
        closing = await flow.intake.close(y.order_id)
        assert closing.accepted, closing
        await _until(lambda: _has_event(services, y.order_id, "CLOSE_REQUESTED"))
        # Redis comes back empty; the worker's pending call fails
        await store.inner.flush_all()
        store.release.set()
        await flow.settle()

        x_after = await flow.order(x.order_id)
        assert x_after.status is OrderStatus.CLOSED
        assert x_after.net_profit is not None
        account = await flow.account()
        # X's loss booked once (Y is CLOSING: its money has not moved)
        assert account.balance == balance_before + x_after.net_profit
        assert [p.order_id for p in account.positions] == [y.order_id]
        # the TP is still cancelled at the LP, though its first request never left
        assert flow.request(RequestKind.CANCEL_TP, x.order_id)
        await _assert_books_agree(services)


async def _has_event(services: Services, order_id: str, kind: str) -> bool:
    return kind in [e.kind for e in await services.database.events_for_order(order_id)]


async def scenario_rebuild_while_writer_behind(services: Services, held: HeldWriter) -> None:
    """A fill acknowledged while its DB event waits at the db writer; the store is wiped."""
    async with _running(services) as flow:
        x = await flow.open_request()
        z = await flow.place_pending_request()
        held.hold()
        await flow.report(x.lifecycle_id, "EXECUTED", qty=QTY, px=ASK, settle=False)
        async with asyncio.timeout(_WAIT_S):
            await held.holding.wait()
        # the open worker acked the fill: its effects were published (to the db writer)
        await _until(lambda: _is_open(services, x.order_id))
        await services.state.flush_all()
        # the next report a worker takes finds the store empty and makes it rebuild
        await _to_worker(services, Worker.PENDING, z.lifecycle_id, z.order_id, z.kind, z.request)
        await _until(lambda: _claimed(services.state))
        await asyncio.sleep(0.2)  # a rebuild that does not wait for the writer is done by now
        held.release.set()
        await flow.settle()

        assert (await flow.order(x.order_id)).status is OrderStatus.OPEN
        assert (await flow.order(z.order_id)).status is OrderStatus.PENDING
        assert [p.order_id for p in (await flow.account()).positions] == [x.order_id]
        await _assert_books_agree(services)


async def _to_worker(
    services: Services,
    worker: Worker,
    lifecycle_id: str,
    order_id: str,
    kind: RequestKind,
    request: dict[str, Any],
) -> None:
    """The LP's acceptance of ``request``, as the dispatcher routed it before the wipe."""
    report = parse_message(
        orjson.dumps(
            {
                "type": "8",
                "clordid": lifecycle_id,
                "exec_id": "E-after-wipe",
                "ord_status": "PENDING",
                "symbol": request["symbol"],
                "price": request["price"],
            }
        )
    )
    assert isinstance(report, ExecutionReport)
    lifecycle = LifecycleRecord(lifecycle_id, USER, order_id, kind)
    body = {"report": report_to_dict(report), "lifecycle": lifecycle_to_dict(lifecycle)}
    await services.bus.publish(services.queues.worker(worker.value), orjson.dumps(body))


async def _is_open(services: Services, order_id: str) -> bool:
    found = await services.state.get_order(USER, order_id)
    return found is not None and found.data.get("status") == OrderStatus.OPEN.value


async def _claimed(state: StateStore) -> bool:
    return await state.get_lifecycle(REBUILD_CLAIM) is not None


# -- on the in-memory store and on Redis ------------------------------------------------------


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
async def inner_store(request: pytest.FixtureRequest) -> AsyncIterator[StateStore]:
    """The store under test; on Redis under a key prefix of its own (the server is shared)."""
    if request.param == "memory":
        yield InMemoryStateStore()
        return
    need_service("redis")
    prefix = unique("efloss")
    yield RedisStateStore(REDIS_URL, key_prefix=prefix)
    # the services closed the store above; wipe this prefix's keys (never anyone else's)
    cleanup = RedisStateStore(REDIS_URL, key_prefix=prefix)
    await cleanup.connect()
    try:
        await cleanup.flush_all()
    finally:
        await cleanup.close()


@pytest.fixture
async def on_store(
    settings: Settings, logs: LogSystem, clock: FakeClock, bus: InMemoryBus, inner_store: StateStore
) -> AsyncIterator[Services]:
    """Services on ``inner_store`` (in-memory bus, SQLite)."""
    ids = SequentialIds("trace")
    async with open_services(
        settings, logs, clock=clock, ids=ids, bus=bus, state=inner_store
    ) as services:
        yield services


@pytest.fixture
async def store_goes_away(
    settings: Settings, logs: LogSystem, clock: FakeClock, bus: InMemoryBus, inner_store: StateStore
) -> AsyncIterator[tuple[Services, StoreGoesAway]]:
    """Services on ``inner_store`` wrapped: the first CANCEL_TP registration sees an outage."""
    store = StoreGoesAway(inner_store, RequestKind.CANCEL_TP)
    ids = SequentialIds("trace")
    opened = open_services(settings, logs, clock=clock, ids=ids, bus=bus, state=store)
    async with opened as services:
        yield services, store


async def test_fill_committed_but_unpublished_when_the_store_is_lost_is_booked_once(
    store_goes_away: tuple[Services, StoreGoesAway],
) -> None:
    services, store = store_goes_away
    await scenario_fill_lost_under_a_later_snapshot(services, store)


async def test_rebuild_waits_for_db_events_still_on_their_way(
    on_store: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = HeldWriter(on_store.database.write_batch)
    monkeypatch.setattr(on_store.database, "write_batch", held.write_batch)
    await scenario_rebuild_while_writer_behind(on_store, held)


async def test_no_account_is_cached_from_the_database_while_the_store_is_incomplete(
    on_store: Services,
) -> None:
    async with _running(on_store) as flow:
        await flow.opened()
    state = on_store.state
    await state.flush_all()  # came back empty: no completeness marker
    log = on_store.logger("worker_open")
    with pytest.raises(StoreError):
        await load_account(on_store, USER, log, "OPEN")
    assert await state.get_account(USER) is None
    # once a rebuild marked the store complete, the fallback serves again
    await mark_complete(state)
    assert (await load_account(on_store, USER, log, "OPEN")).data["account_id"] == USER


async def test_a_report_after_a_silent_wipe_is_routed_after_the_rebuild_not_dead_lettered(
    on_store: Services, read_logs: LogReader
) -> None:
    async with _running(on_store) as flow:
        x = await flow.open_request()
        # the store restarts empty between two messages: no process saw an error
        await on_store.state.flush_all()
        await flow.report(x.lifecycle_id, "EXECUTED", qty=QTY, px=ASK)
        assert (await flow.order(x.order_id)).status is OrderStatus.OPEN
        assert not read_logs.find("dispatcher", "DISPATCH:DLQ")
        await _assert_books_agree(on_store)


async def test_an_intake_action_after_the_loss_rebuilds_behind_the_writer_first(
    on_store: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = HeldWriter(on_store.database.write_batch)
    monkeypatch.setattr(on_store.database, "write_batch", held.write_batch)
    async with _running(on_store) as flow:
        x = await flow.open_request()
        held.hold()
        await flow.report(x.lifecycle_id, "EXECUTED", qty=QTY, px=ASK, settle=False)
        async with asyncio.timeout(_WAIT_S):
            await held.holding.wait()
        await _until(lambda: _is_open(on_store, x.order_id))
        await on_store.state.flush_all()

        async def release_once_a_rebuild_waits() -> None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await _until(lambda: _claimed(on_store.state))
            await asyncio.sleep(0.2)
            held.release.set()

        # the intake is the first to meet the empty store
        placed, _ = await asyncio.gather(
            flow.intake.open_market(USER, SYMBOL, "BUY", QTY), release_once_a_rebuild_waits()
        )
        assert placed.accepted, placed
        await flow.settle()
        account = await flow.account()
        assert [p.order_id for p in account.positions] == [x.order_id]
        assert {r.order_id for r in account.reservations} == {placed.order_id}
        await _assert_books_agree(on_store)
