"""DLQ tools: move into the table, list, replay (dry run and for real), all logged."""

from __future__ import annotations

from datetime import timedelta

import orjson

from execflow.domain.enums import OrderStatus
from execflow.pipeline.dlq import drain_dlq, list_dead_letters, replay_dead_letters
from execflow.pipeline.services import Services
from tests.pipeline.conftest import LogReader
from tests.pipeline.flow import ASK, QTY, Flow


async def test_list_moves_the_dlq_into_the_table_and_replay_fixes_a_late_lifecycle(
    services: Services, read_logs: LogReader
) -> None:
    async with Flow.running(services) as flow:
        setup = await flow.open_request()
        # the fill names a ClOrdID the dispatcher does not know yet (e.g. a typo fixed later)
        await flow.report("LATE-1", "EXECUTED", qty=QTY, px=ASK)
        await flow.raw(b"garbage")
        await flow.settle()
        log = services.logger("supervisor")
        now = services.clock.now() + timedelta(seconds=90)
        views = await list_dead_letters(services.bus, services.database, log, now)
        assert sorted(v.reason for v in views) == ["malformed_report", "unknown_lifecycle_id"]
        assert await services.bus.queue_depth(services.queues.dlq) == 0
        late = next(v for v in views if v.reason == "unknown_lifecycle_id")
        assert (late.order, late.queue, late.age_s) == ("LATE-1", services.queues.reports, 90.0)
        # listing again shows the same rows: nothing was lost or duplicated
        again = await list_dead_letters(services.bus, services.database, log, now)
        assert [v.id for v in again] == [v.id for v in views]

        planned = await replay_dead_letters(
            services.bus, services.database, log, now, reason="unknown_lifecycle_id", dry_run=True
        )
        assert (len(planned.selected), planned.replayed) == (1, 0)
        await services.state.put_lifecycle(
            "LATE-1",
            {"lifecycle_id": "LATE-1", "account_id": "live:6", "order_id": setup.order_id,
             "kind": "OPEN"},
        )  # fmt: skip
        done = await replay_dead_letters(
            services.bus, services.database, log, now, reason="unknown_lifecycle_id"
        )
        assert done.replayed == 1
        await flow.settle()
        assert (await flow.order(setup.order_id)).status is OrderStatus.OPEN
        remaining = await list_dead_letters(services.bus, services.database, log, now)
        assert [v.reason for v in remaining] == ["malformed_report"]
        everything = await list_dead_letters(
            services.bus, services.database, log, now, include_replayed=True
        )
        assert [v.replayed_at is not None for v in everything] == [True, False]
    assert len(read_logs.find("supervisor", "DLQ:MOVED")) == 2
    assert read_logs.one("supervisor", "DLQ:REPLAY_PLANNED").get("order_id") == "LATE-1"
    assert read_logs.one("supervisor", "DLQ:REPLAYED").get("dead_letter_id") == str(late.id)
    summaries = read_logs.find("supervisor", "DLQ:REPLAY")
    assert [(s.get("dry_run"), s.get("replayed")) for s in summaries] == [
        ("true", "0"),
        ("false", "1"),
    ]


async def test_worker_dead_letters_show_their_order_and_trace(services: Services) -> None:
    body = orjson.dumps({"report": {}, "lifecycle": {"order_id": "3163458366000"}})
    await services.bus.publish(
        services.queues.worker("close"), body, {"trace_id": "t-1", "order_id": "3163458366000"}
    )
    delivery = await services.bus.get(services.queues.worker("close"))
    assert delivery is not None
    await delivery.dead_letter("needs_review", "both_legs_filled")
    log = services.logger("supervisor")
    assert await drain_dlq(services.bus, services.database, log) == 1
    [view] = await list_dead_letters(services.bus, services.database, log, services.clock.now())
    assert (view.order, view.trace_id, view.reason, view.error) == (
        "3163458366000",
        "t-1",
        "needs_review",
        "both_legs_filled",
    )
    assert view.to_dict()["queue"] == services.queues.worker("close")
