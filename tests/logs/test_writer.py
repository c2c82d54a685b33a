"""The caller side of the writer: disabled levels, prompt errors, bounded queues."""

from __future__ import annotations

from pathlib import Path

from execflow.logs.catalog import CATALOG, ResolvedFile
from execflow.logs.failures import FailureReporter, WriterCounters
from execflow.logs.files import RotatingFile
from execflow.logs.writer import BackgroundWriter

from .conftest import SystemFactory, split_lines


def test_disabled_level_writes_nothing(make_system: SystemFactory, log_dir: Path) -> None:
    system = make_system("worker_open", log_level="WARNING")
    system.events.debug("OPEN:ACK", order_id=1)
    system.events.info("OPEN:RECEIVED", order_id=1)
    system.events.warning("OPEN:PARKED", order_id=1)
    system.flush()
    (line,) = split_lines((log_dir / "worker_open.log").read_bytes())
    assert "[OPEN:PARKED]" in line


def test_an_error_wakes_the_writer(make_system: SystemFactory) -> None:
    system = make_system("worker_open")
    system.flush()
    system.writer.wake.clear()
    system.events.info("OPEN:RECEIVED")
    assert not system.writer.wake.is_set()
    system.events.error("OPEN:ERROR", order_id=1)
    # Either still set, or the writer already took it: both mean an immediate write.
    system.flush()
    assert system.counters.lines >= 2


def test_a_stalled_writer_makes_the_caller_drop_not_grow(tmp_path: Path) -> None:
    counters = WriterCounters()
    failures = FailureReporter(counters)
    writer = BackgroundWriter(counters, failures, buffer_bytes=4096)  # never started: stalled
    resolved = ResolvedFile(CATALOG["worker_open"], tmp_path / "w.log", 1 << 20, 1)
    sink = writer.add(RotatingFile(resolved, counters, failures))
    for _ in range(writer.max_lines + 1):
        sink.queue.append(b"x\n")
    writer.pressure(sink)  # waits for progress that never comes, then drops
    assert counters.dropped == 1
    assert len(sink.queue) == writer.max_lines
    sink.queue.append(b"y\n")
    writer.pressure(sink)  # still stalled: drops at once, no second wait
    assert counters.dropped == 2
    writer.close()  # no thread: drains on the caller, so the kept lines are written
    assert (tmp_path / "w.log").read_bytes() == b"x\n" * writer.max_lines
