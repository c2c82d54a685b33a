"""The ClOrdIDs a gateway has sent, kept on disk beside the FIX store.

The pipeline delivers a provider request at least once: a worker that re-publishes its
effects, or a redelivery after a crash, hands the gateway a request it already sent. A
real LP answers a second NewOrderSingle with a known ClOrdID with a reject ("duplicate
order"), and the pipeline would apply that reject to an order the LP in fact holds.
So the gateway sends each ClOrdID once: a request whose ClOrdID is in this ledger is
acknowledged without being sent again.

An id is written after the engine stored and sent the message, never before (a crash in
between may send it twice; written first, a crash would lose it). Lines are flushed at
once, as the engine's own store is: they survive the process, not the machine.
Memory and file stay bounded: the newest ``kept`` ids are remembered, and the file is
rewritten with them when it grows to twice that.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import TextIO

__all__ = ["SentLedger"]

KEPT = 200_000


class SentLedger:
    """A bounded, file-backed set of ClOrdIDs; safe to use from several threads."""

    def __init__(self, path: Path, kept: int = KEPT) -> None:
        self._path = path
        self._kept = kept
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._file: TextIO | None = None
        self._lines = 0

    def open(self) -> int:
        """Load the ids sent before (blocking I/O: call off the event loop); returns how many."""
        if self._path.exists():
            with self._path.open(encoding="utf-8") as existing:
                for line in existing:
                    self._remember(line.rstrip("\n"))
        self._rewrite()
        return len(self._ids)

    def __contains__(self, clordid: object) -> bool:
        with self._lock:
            return clordid in self._ids

    def add(self, clordid: str) -> None:
        """Record a sent ClOrdID (blocking I/O: call off the event loop)."""
        with self._lock:
            self._remember(clordid)
            if self._file is None:
                return
            self._file.write(clordid + "\n")
            self._file.flush()
            self._lines += 1
            if self._lines >= 2 * self._kept:
                self._rewrite_locked()

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def _remember(self, clordid: str) -> None:
        if not clordid:
            return
        self._ids[clordid] = None
        self._ids.move_to_end(clordid)
        while len(self._ids) > self._kept:
            self._ids.popitem(last=False)

    def _rewrite(self) -> None:
        with self._lock:
            self._rewrite_locked()

    def _rewrite_locked(self) -> None:
        if self._file is not None:
            self._file.close()
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fresh = self._path.with_suffix(".tmp")
        fresh.write_text("".join(f"{i}\n" for i in self._ids), encoding="utf-8")
        fresh.replace(self._path)
        self._file = self._path.open("a", encoding="utf-8")
        self._lines = len(self._ids)
