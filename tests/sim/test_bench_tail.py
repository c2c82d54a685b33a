"""The bench's incremental reader of OPEN:SUCCESS lines."""

from __future__ import annotations

from pathlib import Path

from execflow.apps.bench import SuccessTail, success_times

LINE = "2024-05-01T10:00:0{n}.000000Z INFO provider.worker.open [OPEN:SUCCESS] order_id=o{n} x=1\n"


def test_polls_read_only_complete_new_lines(tmp_path: Path) -> None:
    log_file = tmp_path / "worker_open.log"
    tail = SuccessTail(log_file)
    assert tail.poll() == {}
    log_file.write_text(LINE.format(n=1) + "2024-05-01T10:00:02Z INFO [OPEN:STARTED]\n" + "2024")
    assert list(tail.poll()) == ["o1"]
    with log_file.open("a") as handle:
        handle.write(LINE.format(n=3)[4:])
    assert tail.poll() == success_times(log_file)
    assert list(tail.found) == ["o1", "o3"]


def test_a_poll_also_collects_dead_lettered_reports(tmp_path: Path) -> None:
    log_file = tmp_path / "worker_open.log"
    dead = "2024-05-01T10:00:05Z ERROR provider.worker.open [OPEN:DLQ] order_id=o9 x=1\n"
    log_file.write_text(LINE.format(n=1) + dead + "2024-05-01T10:00:06Z INFO [OPEN:DLQ] x=1\n")
    tail = SuccessTail(log_file)
    assert list(tail.poll()) == ["o1"]
    assert (tail.dead_lettered, tail.settled) == ({"o9"}, 2)
