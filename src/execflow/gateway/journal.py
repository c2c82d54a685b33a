"""The LP messages a gateway received and has not yet published, kept on disk.

QuickFIX counts an incoming message as received (and persists its next expected sequence
number) when the ``fromApp`` callback returns. The gateway appends each report-bearing
message to this journal, flushed, before returning; the event loop publishes from it in
batches and marks what the broker confirmed. A gateway that dies in between finds the
unmarked entries at its next start and publishes them again (the dispatcher's exec_id
ledger applies a copy once). So the engine's thread never waits for the broker, and no
report is lost between the two.

The file is JSON lines: an entry ``{"n": index, "at": ISO time, "raw": FIX text}``
(plus ``"ref"``, the request a session or business reject refers to), a mark
``{"ok": index}`` (every entry up to ``index`` is published). Lines are flushed as the
engine's own store is: they survive the process (kill -9), not the machine. A last line
cut short by a crash is ignored: the engine had not counted that message, so the LP
sends it again. The file stays small: once every entry is marked and it has grown past
``compact_bytes`` it is emptied, and a file that keeps unmarked entries is rewritten
with only those when it passes four times that.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from io import FileIO
from pathlib import Path

import orjson

__all__ = ["COMPACT_BYTES", "JournalEntry", "ReportJournal"]

COMPACT_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One received LP message waiting to be published."""

    index: int
    received_at: datetime
    raw: str
    ref: tuple[str, str] | None = None
    """(MsgType, ClOrdID) of our message a session Reject or BusinessMessageReject names."""


class ReportJournal:
    """An append-only, self-compacting file of received messages; safe from several threads."""

    def __init__(self, path: Path, compact_bytes: int = COMPACT_BYTES) -> None:
        self.path = path
        self._compact_bytes = compact_bytes
        self._lock = threading.Lock()
        self._file: FileIO | None = None
        self._size = 0
        self._next = 1
        self._unmarked: deque[tuple[int, bytes]] = deque()
        self.torn_lines = 0
        """Lines found unreadable by ``open`` (a write a crash cut short)."""

    def open(self) -> list[JournalEntry]:
        """Read what a previous process left unpublished (blocking I/O); returns it in order."""
        entries: dict[int, JournalEntry] = {}
        lines: dict[int, bytes] = {}
        if self.path.exists():
            with self.path.open("rb") as existing:
                for line in existing:
                    self._read_line(line, entries, lines)
        with self._lock:
            self._unmarked = deque((index, lines[index]) for index in sorted(entries))
            self._next = max(entries, default=0) + 1
            self._rewrite_locked()
        return [entries[index] for index in sorted(entries)]

    def append(self, entry_at: datetime, raw: str, ref: tuple[str, str] | None = None) -> int:
        """Write one received message, flushed (blocking I/O); returns its index."""
        with self._lock:
            if self._file is None:
                raise OSError(f"report journal {self.path} is not open")
            index = self._next
            doc: dict[str, object] = {"n": index, "at": entry_at.isoformat(), "raw": raw}
            if ref is not None:
                doc["ref"] = list(ref)
            line = orjson.dumps(doc) + b"\n"
            _write_all(self._file, line)
            self._next += 1
            self._size += len(line)
            self._unmarked.append((index, line))
            return index

    def mark(self, index: int) -> None:
        """Every entry up to ``index`` is published (blocking I/O)."""
        with self._lock:
            if self._file is None:
                return
            unmarked = self._unmarked
            if not unmarked or unmarked[0][0] > index:
                return
            while unmarked and unmarked[0][0] <= index:
                unmarked.popleft()
            if not unmarked and self._size >= self._compact_bytes:
                self._file.seek(0)
                self._file.truncate()
                self._size = 0
                return
            if self._size >= 4 * self._compact_bytes:
                self._rewrite_locked()
                return
            line = orjson.dumps({"ok": index}) + b"\n"
            _write_all(self._file, line)
            self._size += len(line)

    def unmarked(self) -> int:
        """How many entries wait to be marked."""
        with self._lock:
            return len(self._unmarked)

    def close(self) -> None:
        """Close the file (what is unmarked stays for the next start)."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def _read_line(
        self, line: bytes, entries: dict[int, JournalEntry], lines: dict[int, bytes]
    ) -> None:
        try:
            doc = orjson.loads(line)
            if "ok" in doc:
                done = int(doc["ok"])
                for index in [i for i in entries if i <= done]:
                    del entries[index]
                    del lines[index]
                return
            index = int(doc["n"])
            ref = doc.get("ref")
            entries[index] = JournalEntry(
                index,
                datetime.fromisoformat(doc["at"]),
                str(doc["raw"]),
                (str(ref[0]), str(ref[1])) if ref else None,
            )
            lines[index] = line if line.endswith(b"\n") else line + b"\n"
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError):
            self.torn_lines += 1

    def _rewrite_locked(self) -> None:
        if self._file is not None:
            self._file.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = self.path.with_suffix(".tmp")
        body = b"".join(line for _index, line in self._unmarked)
        fresh.write_bytes(body)
        fresh.replace(self.path)
        # unbuffered: a line is one write(2), no buffer to lock and flush on the engine's thread
        self._file = self.path.open("ab", buffering=0)
        self._size = len(body)


def _write_all(file: FileIO, data: bytes) -> None:
    """Write ``data`` whole (a regular file takes it in one call unless the disk is full)."""
    view = memoryview(data)
    while view:
        written = file.write(view)
        if not written:
            raise OSError(f"report journal {file.name}: nothing written")
        view = view[written:]
