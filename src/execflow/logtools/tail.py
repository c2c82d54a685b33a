"""``logs tail``: follow the current files across rotation, with filters.

Each current file (``name.log``) is followed by inode: when the writer rotates it
(renames it to ``name.log.1`` and opens a new ``name.log``), the rest of the old file is
read from the still-open handle before switching to the new one; a file that shrank
(truncated) is read again from its start. Files that appear later are read from their
start.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from execflow.logtools.files import LogFile, discover, iter_lines
from execflow.logtools.record import LogRecord, parse_line

__all__ = ["LEVELS", "Follower", "TailFilter", "follow"]

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_READ_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class TailFilter:
    """Which records to show; ``None`` means any."""

    components: frozenset[str] | None = None
    min_level: str | None = None
    order_id: str | None = None
    event: str | None = None

    def accepts(self, record: LogRecord, stem: str) -> bool:
        """True when ``record`` (read from a file of component ``stem``) passes every filter."""
        # A worker's calculation lines live in the shared orders_calculated.log.
        if (
            self.components is not None
            and stem not in self.components
            and not (stem == "orders_calculated" and record.component in self.components)
        ):
            return False
        if self.min_level is not None:
            rank = LEVELS.index(record.level) if record.level in LEVELS else 0
            if rank < LEVELS.index(self.min_level):
                return False
        if self.order_id is not None and record.get("order_id") != self.order_id:
            return False
        return self.event is None or self.event.upper() in record.tag.upper()


@dataclass
class _Followed:
    log_file: LogFile
    handle: BinaryIO
    inode: int
    pending: bytes = b""


class Follower:
    """Reads the lines appended to the current files of a directory since the last poll."""

    def __init__(self, directory: Path, wanted: TailFilter) -> None:
        self.directory = directory
        self.wanted = wanted
        self._files: dict[Path, _Followed] = {}
        self._started = False

    def _current_files(self) -> list[LogFile]:
        # provider_errors.log repeats the ERROR lines of the component files: followed
        # only when asked for by name.
        wanted = self.wanted.components or frozenset()
        return [
            f
            for f in discover(self.directory)
            if f.generation == 0
            and not f.gzipped
            and (f.stem != "provider_errors" or f.stem in wanted)
        ]

    def initial(self, lines: int) -> list[LogRecord]:
        """The last ``lines`` matching records of the current files; then follow from the end."""
        recent: deque[LogRecord] = deque(maxlen=max(lines, 0))
        candidates: list[LogRecord] = []
        for log_file in self._current_files():
            followed = self._open(log_file, at_end=True)
            if followed is None or lines <= 0:
                continue
            per_file: deque[LogRecord] = deque(maxlen=lines)
            for line in iter_lines(log_file.path):
                record = parse_line(line, log_file.name)
                if record is not None and self.wanted.accepts(record, log_file.stem):
                    per_file.append(record)
            candidates.extend(per_file)
        recent.extend(sorted(candidates, key=lambda r: r.ts))
        self._started = True
        return list(recent)

    def _open(self, log_file: LogFile, *, at_end: bool) -> _Followed | None:
        try:
            handle = log_file.path.open("rb")
        except OSError:
            return None
        inode = os.fstat(handle.fileno()).st_ino
        if at_end:
            handle.seek(0, os.SEEK_END)
        followed = _Followed(log_file, handle, inode)
        self._files[log_file.path] = followed
        return followed

    def _drain(self, followed: _Followed) -> list[LogRecord]:
        out: list[LogRecord] = []
        while chunk := followed.handle.read(_READ_BYTES):
            data = followed.pending + chunk
            cut = data.rfind(b"\n") + 1
            followed.pending = data[cut:]
            for line in data[:cut].split(b"\n")[:-1]:
                record = parse_line(line, followed.log_file.name)
                if record is not None and self.wanted.accepts(record, followed.log_file.stem):
                    out.append(record)
        return out

    def poll(self) -> list[LogRecord]:
        """New matching records of every followed file, in time order."""
        if not self._started:
            self.initial(0)
        out: list[LogRecord] = []
        for log_file in self._current_files():
            followed = self._files.get(log_file.path)
            if followed is None:
                followed = self._open(log_file, at_end=False)
                if followed is None:
                    continue
            try:
                stat = log_file.path.stat()
            except OSError:
                continue
            if stat.st_ino != followed.inode:
                out.extend(self._drain(followed))  # the rest of the rotated file
                followed.handle.close()
                followed = self._open(log_file, at_end=False)
                if followed is None:
                    continue
            elif stat.st_size < followed.handle.tell():
                followed.handle.seek(0)
                followed.pending = b""
            out.extend(self._drain(followed))
        out.sort(key=lambda r: r.ts)
        return out

    def close(self) -> None:
        """Close every open handle."""
        for followed in self._files.values():
            followed.handle.close()
        self._files.clear()


def follow(
    directory: Path,
    wanted: TailFilter,
    emit: Callable[[Iterable[LogRecord]], None],
    *,
    lines: int = 10,
    poll_s: float = 0.25,
    stop: threading.Event | None = None,
    max_seconds: float | None = None,
) -> None:
    """Print the last ``lines`` records, then new ones, until ``stop`` is set or time runs out."""
    stop = stop or threading.Event()
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    follower = Follower(directory, wanted)
    try:
        emit(follower.initial(lines))
        while not stop.is_set():
            emit(follower.poll())
            if deadline is not None and time.monotonic() >= deadline:
                break
            stop.wait(poll_s)
        emit(follower.poll())
    finally:
        follower.close()
