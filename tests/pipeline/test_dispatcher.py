"""The dispatcher on the in-memory bus: every routing cell, every DLQ reason, ignores, trace ids."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import orjson
import pytest

from execflow.backends.bus import H_ERROR, H_REASON
from execflow.backends.memory_bus import InMemoryBus
from execflow.domain.codec import lifecycle_to_dict, report_from_dict
from execflow.domain.enums import ReportStatus, RequestKind
from execflow.domain.models import LifecycleRecord
from execflow.domain.routing import ROUTING_TABLE, DeadLetterDecision, Ignore, Route, Worker
from execflow.metrics import Metrics
from execflow.pipeline.completeness import mark_complete
from execflow.pipeline.dispatcher import dispatcher_consumer
from execflow.pipeline.runner import Runner
from execflow.pipeline.services import Services
from tests.pipeline.conftest import Book, LogReader, drain, settle

FILE = "dispatcher"


def raw_report(lifecycle_id: str | None, exec_id: str, status: str, **extra: Any) -> bytes:
    data: dict[str, Any] = {"type": "8", "exec_id": exec_id, "ord_status": status, **extra}
    if lifecycle_id is not None:
        data["lifecycle_id"] = lifecycle_id
    if status in ("EXECUTED", "PARTIALLY_FILLED"):
        data.setdefault("cum_qty", "0.5")
        data.setdefault("avg_px", "1.08501")
    return orjson.dumps(data)


@pytest.fixture
async def dispatcher(services: Services) -> AsyncIterator[Runner]:
    runner = Runner(services, dispatcher_consumer(services), rand=lambda: 0.5)
    await runner.start()
    yield runner
    await runner.stop()


async def register(services: Services, lifecycle_id: str, kind: RequestKind) -> LifecycleRecord:
    record = LifecycleRecord(lifecycle_id, "live:6", f"order-of-{lifecycle_id}", kind)
    await services.state.put_lifecycle(lifecycle_id, lifecycle_to_dict(record))
    return record


async def test_every_cell_of_the_routing_table(
    services: Services, bus: InMemoryBus, dispatcher: Runner
) -> None:
    expected: dict[str, list[str]] = {}
    ignored = dead = 0
    for n, ((kind, status), decision) in enumerate(sorted(ROUTING_TABLE.items())):
        lifecycle_id = f"L{n}"
        await register(services, lifecycle_id, kind)
        await bus.publish(services.queues.reports, raw_report(lifecycle_id, f"E{n}", status.value))
        if isinstance(decision, Route):
            expected.setdefault(decision.worker.value, []).append(f"E{n}")
        elif isinstance(decision, Ignore):
            ignored += 1
        else:
            assert isinstance(decision, DeadLetterDecision)
            dead += 1
    await settle(bus)

    assert sorted(expected) == sorted(w.value for w in Worker)
    for worker, exec_ids in expected.items():
        messages = await drain(bus, services.queues.worker(worker))
        got = [report_from_dict(orjson.loads(m.body)["report"]).exec_id for m in messages]
        assert got == exec_ids, worker
        assert dispatcher.log.stats.count(f"routed.worker_{worker}") == len(exec_ids)
    dlq = await drain(bus, bus.dlq_name)
    assert len(dlq) == dead
    assert {m.headers[H_REASON] for m in dlq} == {"unmapped_route"}
    assert dispatcher.log.stats.count("ignored") == ignored
    assert dispatcher.log.stats.count("dlq.unmapped_route") == dead


async def test_routed_message_follows_the_wiring_contract(
    services: Services, bus: InMemoryBus, book: Book, dispatcher: Runner, read_logs: LogReader
) -> None:
    accepted = await book.submit("o1")
    lifecycle_id = accepted.lifecycle.lifecycle_id
    raw = raw_report(lifecycle_id, "X1", "EXECUTED", symbol="EURUSD", provider="lp1")
    await bus.publish(services.queues.reports, raw, {"message_id": "lp-msg-1"})
    await settle(bus)

    [message] = await drain(bus, services.queues.worker("open"))
    body = orjson.loads(message.body)
    assert body["lifecycle"] == lifecycle_to_dict(accepted.lifecycle)
    assert body["report"]["exec_id"] == "X1"
    assert body["report"]["lifecycle_id"] == lifecycle_id
    assert message.headers["trace_id"] == "trace1"
    assert message.headers["lifecycle_id"] == lifecycle_id
    assert message.headers["kind"] == "OPEN"
    assert message.headers["account_id"] == "live:6"
    assert message.headers["order_id"] == "o1"

    received = read_logs.one(FILE, "DISPATCH:RECEIVED")
    assert (received.level, received.fields["message_id"]) == ("DEBUG", "lp-msg-1")
    assert received.fields["trace_id"] == "trace1"
    routed = read_logs.one(FILE, "DISPATCH:ROUTED")
    assert routed.level == "INFO"
    assert routed.fields["kind"] == "OPEN"
    assert routed.fields["status"] == "EXECUTED"
    assert routed.fields["target_queue"] == "execflow.worker.open"
    assert routed.fields["order_id"] == "o1"
    assert routed.fields["user"] == "live:6"
    assert routed.fields["trace_id"] == "trace1"
    assert "processing_time_ms" in routed.fields


async def test_each_report_gets_its_own_trace_id(
    services: Services, bus: InMemoryBus, dispatcher: Runner
) -> None:
    await register(services, "L1", RequestKind.OPEN)
    for exec_id in ("A", "B", "C"):
        await bus.publish(services.queues.reports, raw_report("L1", exec_id, "PARTIALLY_FILLED"))
    await settle(bus)
    messages = await drain(bus, services.queues.worker("open"))
    assert sorted(m.headers["trace_id"] for m in messages) == ["trace1", "trace2", "trace3"]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not a report at all", "malformed_report"),
        (b'{"type": "8", "ord_status": "EXECUTED"}', "malformed_report"),
        (b'{"type": "8", "exec_id": "E1", "ord_status": "2", "avg_px": 1.5}', "malformed_report"),
        (raw_report(None, "E1", "EXECUTED"), "missing_lifecycle_id"),
        (raw_report("nobody-knows-me", "E1", "EXECUTED"), "unknown_lifecycle_id"),
    ],
)
async def test_dead_letter_reasons(
    services: Services,
    bus: InMemoryBus,
    dispatcher: Runner,
    read_logs: LogReader,
    raw: bytes,
    reason: str,
) -> None:
    await bus.publish(services.queues.reports, raw)
    await settle(bus)
    [dead] = await drain(bus, bus.dlq_name)
    assert dead.body == raw  # the original bytes, for replay
    assert dead.headers[H_REASON] == reason
    assert dead.headers[H_ERROR]
    line = read_logs.one(FILE, "DISPATCH:DLQ")
    assert (line.level, line.fields["reason"]) == ("WARNING", reason)
    assert line.fields["target_queue"] == "execflow.dlq"
    assert line.fields["detail"]
    assert "processing_time_ms" in line.fields
    assert dispatcher.log.stats.count(f"dlq.{reason}") == 1


async def test_unmapped_route_names_kind_and_status(
    services: Services, bus: InMemoryBus, dispatcher: Runner, read_logs: LogReader
) -> None:
    await register(services, "L1", RequestKind.CLOSE)
    await bus.publish(services.queues.reports, raw_report("L1", "E1", "MODIFY"))
    await settle(bus)
    [dead] = await drain(bus, bus.dlq_name)
    assert dead.headers[H_REASON] == "unmapped_route"
    line = read_logs.one(FILE, "DISPATCH:DLQ")
    assert (line.fields["kind"], line.fields["status"]) == ("CLOSE", "MODIFY")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"type": "0"}', "heartbeat"),
        (b"8=FIX.4.4|35=0|", "heartbeat"),
    ],
)
async def test_non_execution_messages_are_counted_and_ignored(
    services: Services,
    bus: InMemoryBus,
    dispatcher: Runner,
    read_logs: LogReader,
    raw: bytes,
    reason: str,
) -> None:
    await bus.publish(services.queues.reports, raw)
    await settle(bus)
    assert await drain(bus, bus.dlq_name) == []
    line = read_logs.one(FILE, "DISPATCH:IGNORED")
    assert (line.level, line.fields["reason"]) == ("DEBUG", reason)
    assert dispatcher.log.stats.count("ignored") == 1
    assert dispatcher.log.stats.count("skipped") == 1


async def test_lp_ack_of_a_market_order_is_ignored(
    services: Services, bus: InMemoryBus, dispatcher: Runner, read_logs: LogReader
) -> None:
    await register(services, "L1", RequestKind.OPEN)
    await bus.publish(services.queues.reports, raw_report("L1", "E1", ReportStatus.PENDING.value))
    await settle(bus)
    line = read_logs.one(FILE, "DISPATCH:IGNORED")
    assert (line.fields["reason"], line.fields["kind"], line.fields["status"]) == (
        "ack",
        "OPEN",
        "PENDING",
    )
    assert await drain(bus, services.queues.worker("open")) == []


async def test_a_fix_report_is_routed_like_a_json_one(
    services: Services, bus: InMemoryBus, dispatcher: Runner
) -> None:
    await register(services, "L1", RequestKind.PLACE_SL)
    raw = b"8=FIX.4.4|35=8|11=L1|17=F1|39=0|150=0|55=EURUSD|99=1.07|"
    await bus.publish(services.queues.reports, raw)
    await settle(bus)
    [message] = await drain(bus, services.queues.worker("stoploss"))
    assert orjson.loads(message.body)["report"]["exec_id"] == "F1"


async def test_metrics_count_routes_outcomes_and_dlq_reasons(
    services: Services, bus: InMemoryBus
) -> None:
    await mark_complete(services.state)  # as every process start does: one delivery each
    metrics = Metrics("all")
    with_metrics = replace(services, metrics=metrics)
    dispatcher = Runner(with_metrics, dispatcher_consumer(with_metrics), rand=lambda: 0.5)
    await dispatcher.start()
    await register(services, "L1", RequestKind.OPEN)
    await bus.publish(services.queues.reports, raw_report("L1", "E1", "EXECUTED"))
    await bus.publish(services.queues.reports, raw_report("L404", "E2", "EXECUTED"))
    await bus.publish(services.queues.reports, b'{"type": "0"}')
    await settle(bus)
    await dispatcher.stop()
    text = metrics.exposition().decode()
    assert "execflow_reports_received_total 3.0" in text
    assert 'execflow_reports_routed_total{queue="execflow.worker.open"} 1.0' in text
    assert 'execflow_dlq_total{reason="unknown_lifecycle_id"} 1.0' in text
    assert "execflow_reports_ignored_total 1.0" in text
