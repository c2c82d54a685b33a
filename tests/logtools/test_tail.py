"""``logs tail``: follows files across rotation and truncation, with filters."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path

from execflow.logtools.record import LogRecord
from execflow.logtools.tail import Follower, TailFilter, follow


def _line(n: int, level: str = "INFO", tag: str = "OPEN:SUCCESS", order: str = "1") -> bytes:
    return (
        f"2026-11-29T12:00:{n // 1000:02d}.{n % 1000:06d}Z {level} provider.worker.open [{tag}] "
        f"order_id={order} n={n}\n"
    ).encode()


def _append(path: Path, *lines: bytes) -> None:
    with path.open("ab") as out:
        out.write(b"".join(lines))


def _numbers(records: list[LogRecord]) -> list[int]:
    return [int(r.get("n") or -1) for r in records]


def test_initial_lines_then_new_lines_across_rotation_and_truncation(tmp_path: Path) -> None:
    current = tmp_path / "worker_open.log"
    _append(current, *(_line(n) for n in range(5)))
    follower = Follower(tmp_path, TailFilter())
    assert _numbers(follower.initial(3)) == [2, 3, 4]
    assert follower.poll() == []
    _append(current, _line(5))
    assert _numbers(follower.poll()) == [5]
    # Rotation: the writer appends a last line, renames, then starts a new file.
    _append(current, _line(6))
    os.rename(current, tmp_path / "worker_open.log.1")
    _append(current, _line(7), _line(8))
    assert _numbers(follower.poll()) == [6, 7, 8]
    # Truncation in place: read again from the start.
    current.write_bytes(_line(9))
    assert _numbers(follower.poll()) == [9]
    # A partial line waits for its newline.
    with current.open("ab") as out:
        out.write(_line(10)[:20])
    assert follower.poll() == []
    with current.open("ab") as out:
        out.write(_line(10)[20:])
    assert _numbers(follower.poll()) == [10]
    # A component that starts later is read from its beginning.
    _append(tmp_path / "dispatcher.log", _line(11))
    assert _numbers(follower.poll()) == [11]
    follower.close()


def test_filters(tmp_path: Path) -> None:
    _append(
        tmp_path / "worker_open.log",
        _line(1, "INFO", "OPEN:SUCCESS", "7"),
        _line(2, "WARNING", "OPEN:PARKED", "7"),
        _line(3, "ERROR", "OPEN:ERROR", "8"),
    )
    _append(tmp_path / "dispatcher.log", _line(4, "ERROR", "DISPATCH:ERROR", "7"))

    def shown(wanted: TailFilter) -> list[int]:
        follower = Follower(tmp_path, wanted)
        try:
            return sorted(_numbers(follower.initial(100)))
        finally:
            follower.close()

    assert shown(TailFilter(min_level="WARNING")) == [2, 3, 4]
    assert shown(TailFilter(order_id="7")) == [1, 2, 4]
    assert shown(TailFilter(event="parked")) == [2]
    assert shown(TailFilter(components=frozenset({"dispatcher"}))) == [4]


def test_follow_stops_on_event(tmp_path: Path) -> None:
    _append(tmp_path / "worker_open.log", _line(1))
    stop = threading.Event()
    seen: list[LogRecord] = []

    def emit(records: Iterable[LogRecord]) -> None:
        seen.extend(records)
        if seen:
            stop.set()

    follow(tmp_path, TailFilter(), emit, lines=5, poll_s=0.01, stop=stop)
    assert _numbers(seen) == [1]
