"""Stuck orders end to end, embedded: an LP that never answers, the listing, the metric, resolve.

Every test runs the embedded pipeline on the in-memory bus and state store with SQLite
and the fake clock; the test plays the LP (``Flow``) and, mostly, stays silent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from decimal import Decimal

import pytest

from execflow.backends.database import StoredEvent
from execflow.backends.memory_state import InMemoryStateStore
from execflow.backends.state import Versioned
from execflow.clock import FakeClock
from execflow.domain.enums import LegState, OrderStatus, RequestKind
from execflow.domain.resolution import OperatorNote, Resolution
from execflow.logs import LogSystem
from execflow.metrics import Metrics
from execflow.pipeline.audit import verify_chains
from execflow.pipeline.reconcile import reconcile
from execflow.pipeline.resolve import Refused, Resolved, resolve_order
from execflow.pipeline.services import Services, open_services
from execflow.pipeline.stuck import StuckWatch, find_stuck
from execflow.settings import Settings
from tests.pipeline.conftest import LogReader, drain
from tests.pipeline.e2e_cells import OPENING, check_state_and_db
from tests.pipeline.flow import ASK, BID, PARTIAL, QTY, SL, TP, Flow

K = RequestKind
AFTER_S = 300.0
REASON = "LP desk: request never received"
NOTE = {"name": "alice", "reason": REASON}


def _note(resolution: Resolution) -> OperatorNote:
    return OperatorNote("alice", REASON, resolution)


async def test_an_unanswered_order_is_stuck_from_the_threshold_on(
    services: Services, clock: FakeClock
) -> None:
    async with Flow.running(services) as flow:
        setup = await flow.open_request()
        order = await flow.order(setup.order_id)
        clock.advance(AFTER_S - 1)
        assert await find_stuck(services.state, clock.now(), AFTER_S) == []
        clock.advance(1)
        stuck = await find_stuck(services.state, clock.now(), AFTER_S)
        assert [(s.order_id, s.status, s.waiting_for) for s in stuck] == [
            (setup.order_id, "QUEUED", ("OPEN",))
        ]
        assert stuck[0].lifecycle_ids == (setup.lifecycle_id,)
        assert stuck[0].silent_s == AFTER_S and stuck[0].reserved_margin == order.reserved_margin
        assert stuck[0].to_dict()["reserved_margin"] == str(order.reserved_margin)


@pytest.mark.parametrize("kind", list(K), ids=[k.value for k in K])
async def test_every_request_kind_left_unanswered_is_listed(
    services: Services, clock: FakeClock, kind: RequestKind
) -> None:
    async with Flow.running(services) as flow:
        setup = await flow.setup(kind)
        clock.advance(AFTER_S)
        stuck = await find_stuck(services.state, clock.now(), AFTER_S)
        assert [(s.order_id, s.waiting_for, s.lifecycle_ids) for s in stuck] == [
            (setup.order_id, (kind.value,), (setup.lifecycle_id,))
        ]


async def test_a_resting_pending_order_and_an_open_position_are_not_stuck(
    services: Services, clock: FakeClock
) -> None:
    async with Flow.running(services) as flow:
        await flow.resting()
        await flow.opened()
        clock.advance(30 * 86400)
        assert await find_stuck(services.state, clock.now(), AFTER_S) == []


async def test_resolve_as_rejected_releases_the_reservation_and_records_who_and_why(
    services: Services, clock: FakeClock, read_logs: LogReader
) -> None:
    async with Flow.running(services) as flow:
        free_before = (await flow.account()).free_margin
        setup = await flow.open_request()
        assert (await flow.account()).free_margin < free_before
        clock.advance(AFTER_S * 2)
        result = await resolve_order(services, setup.order_id, _note(Resolution.REJECTED))
        await flow.settle()
        assert isinstance(result, Resolved), result
        assert (result.worker, result.kind, result.status_before, result.status) == (
            "reject", "OPEN", "QUEUED", "REJECTED",
        )  # fmt: skip
        account = await flow.account()
        assert account.free_margin == free_before
        assert account.used_margin_all == 0 and account.reservations == ()
        order = await flow.order(setup.order_id)
        assert order.status is OrderStatus.REJECTED and order.reason == REASON
        assert order.applied_exec_ids[-1] == result.exec_id
        assert result.exec_id.startswith("operator:")
        events = await flow.events(setup.order_id)
        last = events[-1]
        assert (last.kind, last.exec_id) == ("ORDER_REJECTED", result.exec_id)
        assert last.payload["operator"] == {**NOTE, "resolution": "rejected"}
        assert last.payload["report"]["provider"] == "operator"
        assert last.payload["deltas"]["used_margin_all"] == str(-order_reserved(events))
        stored = await services.database.get_order(setup.order_id)
        assert stored is not None and stored.status == "REJECTED"
        assert (await reconcile(services.database, services.state)).ok
        assert await find_stuck(services.state, clock.now(), AFTER_S) == []
    line = read_logs.one("supervisor", "RESOLVE:SUCCESS")
    assert (line.get("operator"), line.get("reason"), line.get("resolution")) == (
        "alice", REASON, "rejected",
    )  # fmt: skip
    assert (line.get("worker"), line.get("order_id"), line.get("exec_id")) == (
        "reject", setup.order_id, result.exec_id,
    )  # fmt: skip
    releases = [c for c in read_logs.calculations() if c["event.action"] == "MARGIN_RELEASE"]
    assert [c["exec_id"] for c in releases] == [result.exec_id]


def order_reserved(events: list[StoredEvent]) -> Decimal:
    """The reservation the order's first event booked."""
    return Decimal(events[0].payload["deltas"]["used_margin_all"])


async def test_resolve_as_filled_opens_the_position_as_the_lps_fill_would(
    services: Services, clock: FakeClock
) -> None:
    async with Flow.running(services) as flow:
        twin = await flow.opened()  # filled by the LP's own report at ASK
        setup = await flow.open_request()
        clock.advance(AFTER_S)
        price = Decimal(ASK)
        note = _note(Resolution.FILLED)
        result = await resolve_order(services, setup.order_id, note, price=price)
        await flow.settle()
        assert isinstance(result, Resolved) and result.worker == "open", result
        order, by_lp = await flow.order(setup.order_id), await flow.order(twin.order_id)
        # EURUSD, group standard: hs = 12 x 0.00001 / 2; 1 lot at 1.08502 + hs, leverage 100
        assert order.open_price == Decimal("1.08508") == by_lp.open_price
        assert order.margin == Decimal("1085.08") == by_lp.margin
        assert order.entry_commission == by_lp.entry_commission
        account = await flow.account()
        assert account.used_margin_executed == Decimal("2170.16")
        assert account.reservations == () and account.used_margin_all == Decimal("2170.16")
        events = await flow.events(setup.order_id)
        assert events[-1].kind == "ORDER_OPENED"
        assert events[-1].payload["operator"] == {**NOTE, "resolution": "filled"}
        assert (await reconcile(services.database, services.state)).ok


_RESOLUTIONS = [(k, r) for k in K for r in Resolution]


@pytest.mark.parametrize(
    ("kind", "resolution"), _RESOLUTIONS, ids=[f"{k.value}-{r.value}" for k, r in _RESOLUTIONS]
)
async def test_resolve_runs_the_transition_the_lps_report_would(
    services: Services, clock: FakeClock, kind: RequestKind, resolution: Resolution
) -> None:
    """Same order status, legs, account bookkeeping and DB event as the routing-table cell."""
    async with Flow.running(services) as flow:
        setup = await flow.setup(kind)
        before = await flow.event_kinds(setup.order_id)
        clock.advance(AFTER_S)
        price = Decimal(ASK if kind in OPENING else BID)
        filled = resolution is Resolution.FILLED
        result = await resolve_order(
            services, setup.order_id, _note(resolution), price=price if filled else None
        )
        await flow.settle()
        assert isinstance(result, Resolved), result
        await check_state_and_db(flow, setup, kind, resolution.report_status, before)
        last = (await flow.events(setup.order_id))[-1]
        assert last.exec_id == result.exec_id
        assert last.payload["operator"] == {**NOTE, "resolution": resolution.value}
        assert (await reconcile(services.database, services.state)).ok
        assert (await verify_chains(services.database)).ok  # the books stay tamper-evident
        assert await find_stuck(services.state, clock.now(), AFTER_S) == []


async def test_refusals_change_nothing(services: Services, clock: FakeClock) -> None:
    async with Flow.running(services) as flow:
        rejected = _note(Resolution.REJECTED)
        unknown = await resolve_order(services, "9999999999999", rejected)
        assert isinstance(unknown, Refused) and unknown.reason == "unknown_order"
        resting = await flow.resting()
        refused = await resolve_order(services, resting.order_id, rejected)
        assert isinstance(refused, Refused)
        assert (refused.reason, refused.status) == ("nothing_in_flight", "PENDING")
        partial = await flow.open_request()
        await flow.report(partial.lifecycle_id, "PARTIALLY_FILLED", qty=PARTIAL, px=ASK)
        before = await flow.order(partial.order_id)
        events = await flow.event_kinds(partial.order_id)
        killed = await resolve_order(services, partial.order_id, rejected)
        assert isinstance(killed, Refused) and killed.reason == "partially_filled_then_killed"
        no_price = await resolve_order(services, partial.order_id, _note(Resolution.FILLED))
        assert isinstance(no_price, Refused) and no_price.reason == "price_required"
        far = await resolve_order(  # the report guard's band holds for operators too
            services, partial.order_id, _note(Resolution.FILLED), price=Decimal("2.17004")
        )
        assert isinstance(far, Refused) and far.reason == "price_out_of_band"
        await flow.settle()
        assert await flow.order(partial.order_id) == before
        assert await flow.event_kinds(partial.order_id) == events
        done = await resolve_order(
            services, partial.order_id, _note(Resolution.FILLED), price=Decimal(ASK)
        )
        assert isinstance(done, Resolved) and done.status == "OPEN"
        again = await resolve_order(services, partial.order_id, rejected)
        assert isinstance(again, Refused) and again.reason == "nothing_in_flight"
        await flow.settle()
        final = await flow.opened()
        await flow.accepted(await flow.intake.close(final.order_id))
        await flow.report(
            flow.request(K.CLOSE, final.order_id)["lifecycle_id"], "EXECUTED", qty=QTY, px=BID
        )
        closed = await resolve_order(services, final.order_id, rejected)
        assert isinstance(closed, Refused) and (closed.reason, closed.status) == (
            "order_final", "CLOSED",
        )  # fmt: skip


async def test_the_same_exec_id_republishes_instead_of_applying_twice(
    services: Services, clock: FakeClock
) -> None:
    async with Flow.running(services) as flow:
        setup = await flow.open_request()
        first = await resolve_order(services, setup.order_id, _note(Resolution.REJECTED))
        assert isinstance(first, Resolved)
        await flow.settle()
        account = await flow.account()
        again = await resolve_order(
            services, setup.order_id, _note(Resolution.REJECTED), exec_id=first.exec_id
        )
        await flow.settle()
        assert isinstance(again, Resolved) and again.republished
        assert await flow.account() == account
        assert await flow.event_kinds(setup.order_id) == ["ORDER_SUBMITTED", "ORDER_REJECTED"]
        other = await flow.open_request()
        for chosen in ("E00001", first.exec_id, "operator:never"):  # an LP's, another order's
            refused = await resolve_order(
                services, other.order_id, _note(Resolution.REJECTED), exec_id=chosen
            )
            assert isinstance(refused, Refused) and refused.reason == "exec_id_unknown"
        assert (await flow.order(other.order_id)).status is OrderStatus.QUEUED


async def test_the_watch_sets_the_gauge_and_logs_changes(
    services: Services, clock: FakeClock, read_logs: LogReader
) -> None:
    metrics = Metrics("dispatcher")
    log = services.logger("dispatcher")
    watch = StuckWatch(
        services.state, log, clock, after_s=AFTER_S, interval_s=60.0, metrics=metrics
    )

    def gauge() -> float | None:
        return metrics.registry.get_sample_value("execflow_stuck_orders")

    async with Flow.running(services) as flow:
        first = await flow.open_request()
        second = await flow.close_request()
        assert await watch.check() == 0 and gauge() == 0
        clock.advance(AFTER_S)
        assert await watch.check() == 2 and gauge() == 2
        assert await watch.check() == 2  # unchanged: no second line
        await resolve_order(services, first.order_id, _note(Resolution.REJECTED))
        await resolve_order(services, second.order_id, _note(Resolution.CANCELLED))
        assert await watch.check() == 0 and gauge() == 0
    found = read_logs.one("dispatcher", "STUCK:FOUND")
    assert found.level == "WARNING" and found.get("stuck_orders") == "2"
    assert found.get("oldest_order_id") in {first.order_id, second.order_id}
    assert read_logs.one("dispatcher", "STUCK:CLEARED").level == "INFO"


async def test_the_watch_runs_until_stopped(services: Services, clock: FakeClock) -> None:
    metrics = Metrics("dispatcher")
    watch = StuckWatch(
        services.state,
        services.logger("dispatcher"),
        clock,
        after_s=AFTER_S,
        interval_s=0.01,
        metrics=metrics,
    )
    async with Flow.running(services) as flow:
        await flow.open_request()
        clock.advance(AFTER_S)
        watch.start()
        try:
            for _ in range(200):
                if metrics.registry.get_sample_value("execflow_stuck_orders") == 1:
                    break
                await asyncio.sleep(0.01)
        finally:
            await watch.stop()
    assert metrics.registry.get_sample_value("execflow_stuck_orders") == 1


async def test_the_lps_late_answer_after_a_resolution_is_never_booked_twice(
    services: Services, clock: FakeClock, read_logs: LogReader
) -> None:
    async with Flow.running(services) as flow:
        setup = await flow.open_request()
        clock.advance(AFTER_S)
        done = await resolve_order(services, setup.order_id, _note(Resolution.REJECTED))
        assert isinstance(done, Resolved)
        await flow.settle()
        account = await flow.account()
        await flow.report(setup.lifecycle_id, "EXECUTED", qty=QTY, px=ASK)  # it did fill
        await flow.report(setup.lifecycle_id, "REJECTED", reason="late")  # or it did not
        assert await flow.account() == account
        assert (await flow.order(setup.order_id)).status is OrderStatus.REJECTED
        dead = await drain(services.bus, services.queues.dlq)
        assert [m.headers["x-reason"] for m in dead] == ["needs_review"]
        assert (await reconcile(services.database, services.state)).ok
    assert read_logs.one("worker_open", "OPEN:DLQ").level == "ERROR"
    assert read_logs.one("worker_reject", "REJECT:SKIP:STALE").get("reason") == "order_moved_on"


class _ReadCounter(InMemoryStateStore):
    """The in-memory store, remembering which order documents a walk read."""

    def __init__(self) -> None:
        super().__init__()
        self.read: list[str] = []

    async def list_orders(
        self, account_id: str, skip: Collection[str] = ()
    ) -> dict[str, Versioned]:
        found = await super().list_orders(account_id, skip)
        self.read.extend(found)
        return found


async def test_the_watch_reads_a_final_order_once(
    settings: Settings, logs: LogSystem, clock: FakeClock
) -> None:
    state = _ReadCounter()
    opened = open_services(settings, logs, clock=clock, state=state)
    async with opened as services, Flow.running(services) as flow:
        closed = await flow.close_request()
        await flow.report(closed.lifecycle_id, "EXECUTED", qty=QTY, px=BID)
        waiting = await flow.open_request()
        clock.advance(AFTER_S)
        log = services.logger("dispatcher")
        watch = StuckWatch(state, log, clock, after_s=AFTER_S, interval_s=60.0)
        state.read.clear()
        assert await watch.check() == 1
        assert sorted(state.read) == sorted([closed.order_id, waiting.order_id])
        state.read.clear()
        assert await watch.check() == 1
        assert state.read == [waiting.order_id]  # the CLOSED one is not read again


async def test_a_counterpart_cancel_left_unanswered_is_stuck_and_resolvable(
    services: Services, clock: FakeClock
) -> None:
    async with Flow.running(services) as flow:
        setup = await flow.opened(sl=SL, tp=TP)
        sl = flow.request(K.PLACE_SL, setup.order_id)
        tp = flow.request(K.PLACE_TP, setup.order_id)
        await flow.report(sl["lifecycle_id"], "PENDING", level=sl["stop_px"])
        await flow.report(tp["lifecycle_id"], "PENDING", level=tp["price"])
        await flow.report(sl["lifecycle_id"], "EXECUTED", qty=QTY, px=BID)  # the SL fires
        cancel = flow.request(K.CANCEL_TP, setup.order_id)  # ...and the LP never answers
        clock.advance(AFTER_S)
        stuck = await find_stuck(services.state, clock.now(), AFTER_S)
        assert [(s.order_id, s.status, s.waiting_for, s.lifecycle_ids) for s in stuck] == [
            (setup.order_id, "CLOSED", ("CANCEL_TP",), (cancel["lifecycle_id"],))
        ]
        account = await flow.account()
        filled = await resolve_order(
            services, setup.order_id, _note(Resolution.FILLED), price=Decimal("1.09006")
        )
        assert isinstance(filled, Refused) and filled.reason == "both_legs_filled"
        rejected = await resolve_order(services, setup.order_id, _note(Resolution.REJECTED))
        assert isinstance(rejected, Refused) and rejected.reason == "order_final"
        done = await resolve_order(services, setup.order_id, _note(Resolution.CANCELLED))
        assert isinstance(done, Resolved) and (done.worker, done.kind) == ("cancel", "CANCEL_TP")
        await flow.settle()
        order = await flow.order(setup.order_id)
        assert order.tp.state is LegState.CANCELLED and order.status is OrderStatus.CLOSED
        assert await flow.account() == account  # housekeeping: no money moves
        last = (await flow.events(setup.order_id))[-1]
        assert (last.kind, last.payload["operator"]["resolution"]) == ("LEG_CANCELLED", "cancelled")
        assert await find_stuck(services.state, clock.now(), AFTER_S) == []
        assert (await reconcile(services.database, services.state)).ok
