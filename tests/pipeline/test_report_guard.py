"""Reports that contradict their order, hostile free text, bounded input (issue 11, §11).

Each test replays a defect seen in a real run of an earlier version: the contradicting
report must be dead-lettered with its own reason and an ERROR line naming the fields,
and must change nothing in the state store or the database (no DB event published).
"""

from __future__ import annotations

import random
from decimal import Decimal

import orjson
import pytest

from execflow.backends.bus import H_ATTEMPTS, H_ERROR, H_REASON
from execflow.backends.memory_bus import InMemoryBus
from execflow.domain.enums import OrderStatus, Side
from execflow.pipeline.dispatcher import OVERSIZE_KEPT_BYTES
from execflow.pipeline.services import Services
from tests.pipeline.conftest import Book, LogReader, Pipeline

D = Decimal


async def _unchanged(book: Book, pipeline: Pipeline, order_id: str = "o1") -> None:
    """Nothing of the refused report reached the state or the database."""
    order = await book.order(order_id)
    assert (order.status, order.cum_qty, order.applied_exec_ids) == (OrderStatus.QUEUED, D(0), ())
    account = await book.account()
    assert account.positions == ()
    assert account.used_margin_executed == 0
    assert account.reservation_for(order_id) == order.reserved_margin > 0
    assert await pipeline.db_events() == []


async def test_fill_for_another_symbol_is_refused_with_the_fields_named(
    book: Book, pipeline: Pipeline, read_logs: LogReader
) -> None:
    # The run that found it: an EURUSD BUY opened at GBPUSD's price (margin 127.00).
    await book.submit("o1")
    await pipeline.db_events()
    await pipeline.send(
        "o1-open", "X1", "EXECUTED", cum_qty="0.5", avg_px="1.27003", symbol="GBPUSD", side="1"
    )

    [dead] = await pipeline.dead()
    assert dead.headers[H_REASON] == "report_mismatch"
    assert "symbol: report=GBPUSD expected=EURUSD" in dead.headers[H_ERROR]
    line = read_logs.one("worker_open", "OPEN:DLQ")
    assert line.level == "ERROR"
    assert line.fields["reason"] == "report_mismatch"
    assert line.fields["mismatch_fields"] == "symbol"
    assert line.fields["mismatch_symbol"] == "report=GBPUSD expected=EURUSD"
    assert [e.fields["order_id"] for e in read_logs.find("provider_errors", "OPEN:DLQ")] == ["o1"]
    await _unchanged(book, pipeline)


async def test_fill_with_the_wrong_side_is_refused(
    book: Book, pipeline: Pipeline, read_logs: LogReader
) -> None:
    await book.submit("o1")
    await pipeline.db_events()
    await pipeline.send("o1-open", "X1", "EXECUTED", cum_qty="0.5", avg_px="1.08502", side="2")

    [dead] = await pipeline.dead()
    assert dead.headers[H_REASON] == "report_mismatch"
    assert read_logs.one("worker_open", "OPEN:DLQ").fields["mismatch_side"] == (
        "report=SELL expected=BUY"
    )
    await _unchanged(book, pipeline)


async def test_close_fill_must_carry_the_opposite_side(book: Book, pipeline: Pipeline) -> None:
    await book.submit("o1")
    await pipeline.fill("o1-open", "X1")
    await book.close("o1")
    await pipeline.db_events()
    balance = (await book.account()).balance

    # A BUY position closes with a SELL: a report saying BUY is not its close.
    await pipeline.send("o1-close", "C1", "EXECUTED", cum_qty="0.5", avg_px="1.086", side="1")
    [dead] = await pipeline.dead()
    assert dead.headers[H_REASON] == "report_mismatch"
    assert (await book.order("o1")).status is OrderStatus.CLOSING
    assert await pipeline.db_events() == []

    await pipeline.send("o1-close", "C2", "EXECUTED", cum_qty="0.5", avg_px="1.086", side="2")
    assert (await book.order("o1")).status is OrderStatus.CLOSED
    assert (await book.account()).balance != balance


async def test_fill_price_outside_the_band_around_the_quote_is_refused(
    book: Book, pipeline: Pipeline, read_logs: LogReader
) -> None:
    await book.submit("o1")
    await pipeline.db_events()
    # No symbol on the report: only the price gives it away (EURUSD quotes 1.08500/1.08502).
    await pipeline.send("o1-open", "X1", "EXECUTED", cum_qty="0.5", avg_px="1.27003")

    [dead] = await pipeline.dead()
    assert dead.headers[H_REASON] == "price_out_of_band"
    assert read_logs.one("worker_open", "OPEN:DLQ").fields["mismatch_fields"] == "avg_px"
    await _unchanged(book, pipeline)


async def test_cum_qty_above_the_order_is_refused_as_overfill(
    book: Book, pipeline: Pipeline
) -> None:
    await book.submit("o1")
    await pipeline.db_events()
    await pipeline.send("o1-open", "X1", "PARTIALLY_FILLED", cum_qty="0.7", avg_px="1.08502")

    [dead] = await pipeline.dead()
    assert (dead.headers[H_REASON], dead.headers[H_ERROR]) == (
        "overfill",
        "cum_qty: report=0.7 expected=<= 0.5",
    )
    await _unchanged(book, pipeline)


async def test_last_qty_only_fills_count_each_exec_id_once_and_never_overfill(
    book: Book, pipeline: Pipeline, read_logs: LogReader
) -> None:
    # The run that found it: LastQty-only partial fills, each with a new ExecID, counted
    # twice; then needs_review and the order stuck.
    await book.submit("o1")
    await pipeline.db_events()
    part = {"last_qty": "0.2", "last_px": "1.08502"}
    await pipeline.send("o1-open", "P1", "PARTIALLY_FILLED", **part)
    await pipeline.send("o1-open", "P1", "PARTIALLY_FILLED", **part)  # redelivered: once
    await pipeline.send("o1-open", "P2", "PARTIALLY_FILLED", **part)
    assert (await book.order("o1")).cum_qty == D("0.4")

    await pipeline.send("o1-open", "P3", "PARTIALLY_FILLED", **part)  # 0.6 > 0.5
    [dead] = await pipeline.dead()
    assert (dead.headers[H_REASON], dead.headers[H_ERROR]) == (
        "overfill",
        "last_qty: report=0.6 cumulative expected=<= 0.5",
    )
    assert read_logs.one("worker_open", "OPEN:DLQ").level == "ERROR"
    order = await book.order("o1")
    assert (order.status, order.cum_qty) == (OrderStatus.QUEUED, D("0.4"))

    await pipeline.send("o1-open", "P4", "EXECUTED", last_qty="0.1", last_px="1.08502")
    order = await book.order("o1")
    assert (order.status, order.cum_qty) == (OrderStatus.OPEN, D("0.5"))


async def test_last_qty_only_final_fill_that_overtook_its_partials_waits_for_them(
    services: Services, bus: InMemoryBus, book: Book, pipeline: Pipeline, read_logs: LogReader
) -> None:
    await book.submit("o1")

    def raw(exec_id: str, status: str, qty: str, px: str) -> bytes:
        return orjson.dumps(
            {"type": "8", "lifecycle_id": "o1-open", "exec_id": exec_id, "ord_status": status}
            | {"last_qty": qty, "last_px": px}
        )

    # The final fill comes first (reordered); the partials follow before it is retried.
    await bus.publish(services.queues.reports, raw("F3", "EXECUTED", "0.1", "1.08510"))
    await bus.publish(services.queues.reports, raw("F1", "PARTIALLY_FILLED", "0.2", "1.08500"))
    await bus.publish(services.queues.reports, raw("F2", "PARTIALLY_FILLED", "0.2", "1.08500"))
    await bus.join(timeout_s=10)

    order = await book.order("o1")
    assert (order.status, order.cum_qty, order.avg_px) == (
        OrderStatus.OPEN,
        D("0.5"),
        D("1.08502"),
    )
    assert await pipeline.dead() == []


async def test_reject_whose_text_holds_control_characters_is_applied_and_escaped(
    book: Book, pipeline: Pipeline, read_logs: LogReader, services: Services
) -> None:
    # The run that found it: Text(58) with CR, LF and ESC refused whole as malformed,
    # the order QUEUED with its margin reserved forever.
    await book.submit("o1")
    hostile = "No liquidity\r\n2026-11-29T00:00:00Z CRITICAL forged [OPEN:SUCCESS]\x1b[2J\u2028"
    await pipeline.send("o1-open", "R1", "REJECTED", reason=hostile)

    assert await pipeline.dead() == []
    order = await book.order("o1")
    assert order.status is OrderStatus.REJECTED
    assert order.reason == hostile  # kept as sent; escaped where shown
    assert (await book.account()).reservation_for("o1") == 0
    for name in ("worker_reject", "dispatcher"):
        text = read_logs.path(name).read_text(encoding="utf-8")
        assert "\x1b" not in text and "\r" not in text and "\u2028" not in text
        # one line per event: the forged line never starts a line of its own
        assert not any(line.startswith("2026-11-29T00:00:00Z") for line in text.splitlines())
    assert read_logs.one("worker_reject", "REJECT:SUCCESS").fields["order_id"] == "o1"


async def test_reject_without_exec_id_is_applied_once(book: Book, pipeline: Pipeline) -> None:
    await book.submit("o1")
    free = (await book.account()).free_margin
    body = {"type": "8", "lifecycle_id": "o1-open", "ord_status": "8", "text": "No route"}
    for _ in range(2):  # a redelivery derives the same exec_id: applied once
        await pipeline.bus.publish(pipeline.services.queues.reports, orjson.dumps(body))
        await pipeline.bus.join(timeout_s=10)

    order = await book.order("o1")
    assert order.status is OrderStatus.REJECTED
    [exec_id] = order.applied_exec_ids
    assert exec_id.startswith("derived-")
    assert (await book.account()).free_margin > free
    assert await pipeline.dead() == []
    # one DB event; the redelivery re-publishes it under the same message id
    assert {m.message_id for m in await pipeline.db_events()} == {f"o1:{exec_id}:ORDER_REJECTED"}


async def test_deeply_nested_json_is_malformed_on_the_first_attempt(
    book: Book, pipeline: Pipeline, read_logs: LogReader
) -> None:
    await pipeline.bus.publish(
        pipeline.services.queues.reports, b'{"a":' * 10_000 + b"1" + b"}" * 10_000
    )
    await pipeline.bus.join(timeout_s=10)

    [dead] = await pipeline.dead()
    assert dead.headers[H_REASON] == "malformed_report"
    assert dead.headers[H_ATTEMPTS] == "1"
    assert "nested too deeply" in dead.headers[H_ERROR]
    assert read_logs.find("dispatcher", "DISPATCH:RETRY") == []
    assert read_logs.find("dispatcher", "DISPATCH:FAILED") == []


async def test_oversize_message_is_dead_lettered_unparsed_with_its_first_bytes(
    book: Book, pipeline: Pipeline, read_logs: LogReader
) -> None:
    await book.submit("o1")
    await pipeline.db_events()
    fill = {"type": "8", "lifecycle_id": "o1-open", "exec_id": "X1", "ord_status": "2"}
    fill |= {"cum_qty": "0.5", "avg_px": "1.08502", "text": "x" * (5 * 1024 * 1024)}
    body = orjson.dumps(fill)
    await pipeline.bus.publish(pipeline.services.queues.reports, body)
    await pipeline.bus.join(timeout_s=10)

    [dead] = await pipeline.dead()
    assert dead.headers[H_REASON] == "oversize"
    assert dead.body == body[:OVERSIZE_KEPT_BYTES]
    assert str(len(body)) in dead.headers[H_ERROR]
    line = read_logs.one("dispatcher", "DISPATCH:DLQ")
    assert line.fields["size_bytes"] == str(len(body))
    assert line.fields["head"].startswith('{"type":"8"')
    await _unchanged(book, pipeline)


@pytest.mark.parametrize("seed", range(3))
async def test_random_contradicting_reports_change_nothing(
    seed: int, book: Book, pipeline: Pipeline
) -> None:
    """Random orders x random contradicting reports: state and database untouched."""
    rng = random.Random(seed)
    orders = []
    for n in range(4):
        side = rng.choice([Side.BUY, Side.SELL])
        accepted = await book.submit(f"o{n}", side=side, qty=D(rng.choice(["0.1", "0.5"])))
        orders.append(accepted.order)
    await pipeline.db_events()
    before = {o.order_id: await book.order(o.order_id) for o in orders}
    account = await book.account()

    for n in range(40):
        order = rng.choice(orders)
        report: dict[str, str] = {"cum_qty": str(order.qty), "avg_px": "1.08501"}
        spoil = rng.choice(["symbol", "side", "qty", "price", "last_qty"])
        if spoil == "symbol":
            report["symbol"] = rng.choice(["GBPUSD", "USDJPY", "XAUUSD", "EURUSDX"])
        elif spoil == "side":
            report["side"] = "2" if order.side.value == "BUY" else "1"
        elif spoil == "qty":
            report["cum_qty"] = str(order.qty + D(rng.choice(["0.01", "1", "1000"])))
        elif spoil == "price":
            report["avg_px"] = rng.choice(["0.5", "1.2", "2", "150.001"])
        else:
            del report["cum_qty"], report["avg_px"]
            report |= {"last_qty": str(order.qty * 2), "last_px": "1.08501"}
        status = rng.choice(["EXECUTED", "PARTIALLY_FILLED"])
        await pipeline.send(order.lifecycle_id, f"bad{n}", status, **report)

    dead = await pipeline.dead()
    assert len(dead) == 40
    assert {m.headers[H_REASON] for m in dead} <= {
        "report_mismatch",
        "overfill",
        "price_out_of_band",
    }
    assert {o: await book.order(o) for o in before} == before
    assert await book.account() == account
    assert await pipeline.db_events() == []


async def test_last_qty_only_status_report_under_a_new_exec_id_adds_nothing(
    book: Book, pipeline: Pipeline, read_logs: LogReader
) -> None:
    # An order-status (150=I) or restated (150=D) report repeats the last fill's LastQty
    # under a new ExecID: counting it as a fill is how LastQty-only fills overfilled.
    await book.submit("o1")
    part = {"last_qty": "0.2", "last_px": "1.08502"}
    await pipeline.send("o1-open", "P1", "1", exec_type="F", **part)
    await pipeline.send("o1-open", "S1", "1", exec_type="I", **part)
    await pipeline.send("o1-open", "S2", "1", exec_type="D", **part)
    assert (await book.order("o1")).cum_qty == D("0.2")
    stale = read_logs.find("worker_open", "OPEN:SKIP:STALE")
    assert [line.fields["reason"] for line in stale] == ["not_a_new_fill"] * 2

    await pipeline.send("o1-open", "P2", "2", exec_type="F", **(part | {"last_qty": "0.3"}))
    order = await book.order("o1")
    assert (order.status, order.cum_qty) == (OrderStatus.OPEN, D("0.5"))
    assert await pipeline.dead() == []
