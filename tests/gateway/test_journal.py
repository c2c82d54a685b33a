"""The report journal, the engine-to-loop hand-over, and the publisher that uses both.

A report the engine counted is on disk until the broker confirmed it: a publisher that
stops with the broker down leaves it in the journal, and the next one publishes it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import orjson

from execflow.backends.bus import Bus, OutgoingMessage
from execflow.errors import BusError
from execflow.gateway.fixmap import SentRef
from execflow.gateway.handover import Handover
from execflow.gateway.journal import JournalEntry, ReportJournal
from execflow.gateway.publisher import ReportPublisher
from execflow.gateway.quality import QualityRecorder
from execflow.pipeline.services import Services
from tests.gateway.conftest import wait_for

T0 = datetime(2025, 3, 3, 12, 0, 0, tzinfo=UTC)


def fill(exec_id: str, clordid: str = "L1", seq: int = 7) -> str:
    body = f"35=8\x0134={seq}\x0137=LP1\x0111={clordid}\x0117={exec_id}\x01150=F\x0139=2\x01"
    return f"8=FIX.4.4\x019={len(body)}\x01{body}10=000\x01"


def _reopened(path: Path) -> list[JournalEntry]:
    """What a new journal on ``path`` finds unmarked (closed again)."""
    journal = ReportJournal(path)
    try:
        return journal.open()
    finally:
        journal.close()


def test_unmarked_entries_survive_a_reopen_in_order(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    journal = ReportJournal(path)
    assert journal.open() == []
    first = journal.append(T0, fill("e1"))
    second = journal.append(T0, fill("e2"), ("D", "L2"))
    third = journal.append(T0, fill("e3"))
    journal.mark(first)
    journal.close()

    again = ReportJournal(path)
    left = again.open()
    assert [(e.index, e.raw, e.ref) for e in left] == [
        (second, fill("e2"), ("D", "L2")),
        (third, fill("e3"), None),
    ]
    assert left[0].received_at == T0
    # new entries continue after the ones kept
    assert again.append(T0, fill("e4")) == third + 1
    again.mark(third + 1)
    again.close()
    assert _reopened(path) == []


def test_a_last_line_cut_short_by_a_crash_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    journal = ReportJournal(path)
    journal.open()
    journal.append(T0, fill("e1"))
    journal.close()
    with path.open("ab") as file:
        file.write(b'{"n": 2, "at": "2025-03-03T12:00:00+00:00", "raw": "8=FIX')
    again = ReportJournal(path)
    assert [e.raw for e in again.open()] == [fill("e1")]
    assert again.torn_lines == 1
    again.close()


def test_the_file_is_emptied_once_all_is_marked_and_rewritten_when_it_keeps_entries(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.jsonl"
    journal = ReportJournal(path, compact_bytes=2_000)
    journal.open()
    indexes = [journal.append(T0, fill(f"e{n}")) for n in range(30)]
    assert path.stat().st_size > 2_000
    journal.mark(indexes[-1])
    assert path.stat().st_size == 0  # everything published: nothing to keep
    # past four times the threshold with entries still unmarked: only those are kept
    indexes = [journal.append(T0, fill(f"f{n}")) for n in range(60)]
    assert path.stat().st_size > 8_000
    journal.mark(indexes[29])
    lines = path.read_bytes().splitlines()
    assert len(lines) == 30 and not [line for line in lines if b'"ok"' in line]
    journal.append(T0, fill("g"))
    journal.close()
    left = _reopened(path)
    assert [e.raw for e in left] == [fill(f"f{n}") for n in range(30, 60)] + [fill("g")]


def test_the_handover_runs_calls_from_another_thread_in_order_in_one_wake_up() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        handover = Handover(loop)
        seen: list[int] = []
        wakeups = 0
        original = handover._run

        def counted() -> None:
            nonlocal wakeups
            wakeups += 1
            original()

        handover._run = counted  # type: ignore[method-assign]

        def engine_thread() -> None:
            for n in range(500):
                handover.call(seen.append, n)

        def broken() -> None:
            raise RuntimeError("a callback that fails")

        errors: list[object] = []
        loop.set_exception_handler(lambda _loop, context: errors.append(context["exception"]))
        thread = threading.Thread(target=engine_thread)
        thread.start()
        await asyncio.to_thread(thread.join)
        handover.call(broken)
        handover.call(seen.append, 500)
        await wait_for(lambda: len(seen) == 501)
        assert seen == list(range(501))
        assert wakeups < 501  # bursts share a wake-up
        assert len(errors) == 1  # the failing call is reported, the next one still ran

    asyncio.run(main())


class _DownBus:
    """A bus whose broker refuses every publish (the rest is the real one)."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self.attempts = 0

    async def publish_batch(self, queue: str, messages: Sequence[OutgoingMessage]) -> list[str]:
        self.attempts += 1
        raise BusError("broker down")

    def __getattr__(self, name: str) -> object:
        return getattr(self._bus, name)


def _publisher(services: Services, journal: ReportJournal) -> ReportPublisher:
    log = services.logger("lp_gateway")
    quality = QualityRecorder("lp1", log, None)
    sent = {3: SentRef("D", "L3")}
    return ReportPublisher(services, "lp1", log, quality, journal, sent.get)


async def test_reports_the_broker_did_not_take_are_published_by_the_next_start(
    services: Services, tmp_path: Path
) -> None:
    path = tmp_path / "journal.jsonl"
    down = _DownBus(services.bus)
    first = _publisher(replace(services, bus=down), ReportJournal(path))  # type: ignore[arg-type]
    await first.open(Handover(asyncio.get_running_loop()))
    reject = "8=FIX.4.4\x019=30\x0135=3\x0134=8\x0145=3\x0158=bad\x0110=000\x01"

    def engine_thread() -> None:
        first.received("8", fill("e1", "L1"), T0)
        first.received("3", reject, T0)

    await asyncio.to_thread(engine_thread)
    await wait_for(lambda: down.attempts >= 2)
    await first.stop(drain_timeout_s=0.1)
    assert first.seen == 0
    await asyncio.to_thread(services.logs.flush)
    log_text = (services.settings.log_dir / "lp_gateway.log").read_text()
    assert "LPGW:REPORTS_KEPT" in log_text and "reports=2" in log_text

    await services.bus.declare(services.queues.reports)
    second = _publisher(services, ReportJournal(path))
    assert await second.open(Handover(asyncio.get_running_loop())) == 2
    await second.idle()
    bodies = []
    while (delivery := await services.bus.get(services.queues.reports)) is not None:
        bodies.append(orjson.loads(delivery.message.body))
        await delivery.ack()
    assert [(b["11"], b["17"], b["39"]) for b in bodies] == [
        ("L1", "e1", "2"),
        ("L3", "sessrej-L3", "8"),  # the request the reject named was kept with it
    ]
    await second.stop(drain_timeout_s=1)
    assert _reopened(path) == []
