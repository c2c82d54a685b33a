"""Faults 5 and 6: duplicate deliveries and poison messages on the running pipeline.

5. The LP sends 10 % of its reports twice (same exec_id), and the test takes messages
   the open worker already processed and hands them back (``nack(requeue=True)``): every
   copy is skipped (``SKIP:DUPLICATE``), nothing applied twice.
6. Malformed JSON (the LP's own 3 % and a hand-made one), an unknown lifecycle id, an
   illegal transition and a handler that fails every time: each ends in the DLQ with its
   original body, its reason and its attempt count (within the policy's K attempts),
   while the other reports keep flowing.
"""

from __future__ import annotations

import asyncio
import contextlib

import orjson
import pytest

from execflow.backends.bus import H_MESSAGE_ID, Delivery
from execflow.backends.factory import make_database
from execflow.domain.codec import lifecycle_from_dict, lifecycle_to_dict, report_to_dict
from execflow.domain.enums import ReportStatus, RequestKind
from execflow.domain.messages import ExecutionReport
from execflow.domain.models import LifecycleRecord
from execflow.settings import Settings
from tests.faults.conftest import MakeRun, assert_clean
from tests.faults.harness import RunConfig
from tests.faults.stress import deadline_s

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.slow]

REQUEUED = 20


async def test_duplicate_deliveries_are_skipped_never_applied_twice(make_run: MakeRun) -> None:
    run = await make_run(RunConfig(orders=650, rate_per_s=40.0, duplicate_rate=0.1))
    # The tap needs open fills still to come: the database lags the open worker (more so
    # with every core busy), so wait for the stream to start, not for 700 events, by
    # when the opens of a stressed run were nearly over and 20 hand-backs never came.
    await run.wait_events(100)
    run.mark_fault()
    handed_back: list[str] = []
    applied_first: list[str] = []
    async with run.backends() as (bus, _state):
        queue = bus.queues.worker("open")
        database = make_database(run.settings)
        await database.connect()
        enough = asyncio.Event()

        async def tap(delivery: Delivery) -> None:
            """Take a share of the open worker's queue (the broker round-robins)."""
            message = delivery.message
            if enough.is_set():
                await delivery.nack(requeue=True)
                return
            exec_id = orjson.loads(message.body)["report"]["exec_id"]
            # let the worker process an exact copy, then hand the original back
            await bus.publish(queue, message.body, message.headers, message.message_id)
            # (a report that was stale or a duplicate already leaves no event of its own)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(deadline_s(5)):
                    while not any(  # noqa: ASYNC110 - another process writes it
                        e.exec_id == exec_id
                        for e in await database.events_for_order(message.headers["order_id"])
                    ):
                        await asyncio.sleep(0.02)
                    applied_first.append(exec_id)
            await delivery.nack(requeue=True)
            handed_back.append(exec_id)
            if len(handed_back) >= REQUEUED:
                enough.set()

        # Up to REQUEUED deliveries held at once, each tap waiting on its own: taken one
        # at a time, each wait for the copy's event (seconds when every core is busy)
        # let the opens run out before REQUEUED were handed back (stressed runs failed so).
        consumer = await bus.consume(queue, tap, prefetch=REQUEUED)
        try:
            async with asyncio.timeout(deadline_s(120)):
                await enough.wait()
        finally:
            await consumer.stop(5.0)
            await database.close()
    run.mark_cleared()
    verdict = await run.verify("duplicate delivery (LP 10 % twice + 20 processed requeued)")
    skipped = run.lines_with(":SKIP:DUPLICATE]")
    assert len(skipped) >= REQUEUED
    assert len(applied_first) >= REQUEUED // 2, (handed_back, applied_first)
    for exec_id in applied_first:
        assert any(f"exec_id={exec_id} " in line for line in skipped), exec_id
    assert run.sim_lines_with("[SIM:DUPLICATE_SENT]")
    assert_clean(verdict)


async def test_poison_messages_go_to_the_dlq_with_reason_body_and_attempts(
    make_run: MakeRun,
) -> None:
    run = await make_run(RunConfig(orders=650, rate_per_s=40.0, malformed_rate=0.03))
    await run.wait_events(700)
    run.mark_fault()
    settings = Settings()
    sent = next(
        r for r in run.sent_reports() if r.get("status") == "EXECUTED" and r.get("lifecycle_id")
    )
    async with run.backends() as (bus, state):
        reports = bus.queues.reports
        record = await state.get_lifecycle(sent["lifecycle_id"])
        assert record is not None
        lifecycle = lifecycle_from_dict(record)
        poison: dict[str, tuple[str, str, bytes]] = {}

        async def publish(name: str, queue: str, reason: str, body: bytes) -> None:
            poison[name] = (queue, reason, body)
            await bus.publish(queue, body, {H_MESSAGE_ID: f"poison-{name}"}, f"poison-{name}")

        await publish("malformed", reports, "malformed_report", b'{"type": "8", "exec_id": ')
        unknown = {
            "type": "8", "clordid": "no-such-lifecycle", "exec_id": "POISON-U",
            "ord_status": "2", "cum_qty": "1", "avg_px": "1.1", "symbol": "EURUSD",
        }  # fmt: skip
        await publish("unknown", reports, "unknown_lifecycle_id", orjson.dumps(unknown))
        # an acknowledgement routed to the open worker: not an opening fill
        ack = ExecutionReport("POISON-I", ReportStatus.PENDING, lifecycle_id=lifecycle.lifecycle_id)
        illegal = {"report": report_to_dict(ack), "lifecycle": lifecycle_to_dict(lifecycle)}
        await publish(
            "illegal", bus.queues.worker("open"), "invalid_transition", orjson.dumps(illegal)
        )
        # an order nobody has: the handler raises (OrderMissing) on every attempt
        ghost = LifecycleRecord("ghost-lc", lifecycle.account_id, "ghost-order", RequestKind.OPEN)
        fill = ExecutionReport("POISON-R", ReportStatus.EXECUTED, lifecycle_id="ghost-lc")
        raising = {"report": report_to_dict(fill), "lifecycle": lifecycle_to_dict(ghost)}
        await publish("raising", bus.queues.worker("open"), "max_attempts", orjson.dumps(raising))
    before = run.events()
    await asyncio.sleep(3.0)
    assert run.events() > before, "other reports stopped flowing"
    run.mark_cleared()
    verdict = await run.verify("poison messages (LP 3 % malformed + 4 hand-made)")
    letters = await run.dead_letters()
    by_body = {letter.body: letter for letter in letters}
    for name, (queue, reason, body) in poison.items():
        letter = by_body.get(body)
        assert letter is not None, name
        assert letter.reason == reason and letter.queue == queue, (name, letter)
        limit = settings.retry_max_attempts if reason == "max_attempts" else 1
        assert 1 <= letter.attempts <= limit, (name, letter.attempts)
        if reason == "max_attempts":
            assert letter.attempts == settings.retry_max_attempts
            assert letter.error and "OrderMissing" in letter.error
    assert verdict.dead_lettered["malformed_report"] > 1  # the LP's own malformed reports too
    retries = [line for line in run.lines_with("[OPEN:RETRY]") if "ghost-order" in line]
    assert len(retries) == settings.retry_max_attempts - 1  # backed off, no hot loop
    assert_clean(verdict)
