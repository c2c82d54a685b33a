"""The FIX engine's session log in C++: no call into Python per message.

QuickFIX calls its session log for every message in and out (``onIncoming`` /
``onOutgoing``) and for its events (connects, logons, gaps, rejects). A log written in
Python (a SWIG director) enters Python for every one of those calls: the engine's
thread waits for the GIL once more per message, up to the switch interval while the
event loop runs Python (docs/lp-gateway.md, "Benchmark"). ``NativeLogFactory`` gives the
engine QuickFIX's own ``FileLog`` instead, set up so that:

* its messages file is a link to ``/dev/null``: the messages are not written anywhere
  (a Logon carries Password 554; what the gateway keeps of each message is its own
  trail: the report journal, the ClOrdID ledger, the engine's message store);
* its events file is a link to a named pipe that a thread of ours reads, one line per
  event, and hands to ``sink`` (the gateway's ``LPGW:SESSION_EVENT`` lines and its
  reconnect backoff), so events still arrive as they did, only on that thread.

The engine writes an event with one ``write(2)`` into the pipe (a line, flushed), which
never waits for Python unless 64 KiB of events are unread.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import quickfix as fix

__all__ = ["NativeLogFactory", "event_text"]

_PIPE = "engine-events.pipe"
_READ_BYTES = 65536


def event_text(line: str) -> str:
    """An event file's line without the engine's timestamp (``YYYYMMDD-HH:MM:SS.n : text``)."""
    stamp, sep, text = line.partition(" : ")
    return text if sep and stamp[:8].isdigit() else line


def _prefix(session_id: Any) -> str:
    """The file name prefix QuickFIX's ``FileLog`` uses for a session (``GLOBAL`` without)."""
    if session_id is None:
        return "GLOBAL"
    parts = [
        session_id.getBeginString().getString(),
        session_id.getSenderCompID().getString(),
        session_id.getTargetCompID().getString(),
    ]
    qualifier = session_id.getSessionQualifier()
    if qualifier:
        parts.append(qualifier)
    return "-".join(parts)


class NativeLogFactory(fix.LogFactory):  # type: ignore[misc]
    """Hands the engine C++ logs: messages to ``/dev/null``, events through ``sink``.

    ``open`` before the engine is built, ``close`` once it stopped (every event it wrote
    has then been handed to ``sink``).
    """

    def __init__(self, sink: Callable[[str], None], directory: Path) -> None:
        super().__init__()
        self._sink = sink
        self._directory = directory
        self._pipe = directory / _PIPE
        self._fd: int | None = None
        self._reader: threading.Thread | None = None
        self._stop_line = b""
        self._logs: list[Any] = []  # owned by us: the engine keeps bare pointers

    def open(self) -> None:
        """Make the pipe and start reading it (blocking file work: call it off the loop)."""
        self._directory.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self._pipe.unlink()
        os.mkfifo(self._pipe, 0o600)
        # read and write: opening never waits for a writer, and no read sees end of file
        self._fd = os.open(self._pipe, os.O_RDWR)
        self._stop_line = b"\x00stop " + secrets.token_hex(8).encode()
        self._reader = threading.Thread(
            target=self._read, args=(self._fd,), name="fix-engine-events", daemon=True
        )
        self._reader.start()

    def close(self) -> None:
        """Hand over every event written so far, then stop reading (blocking: off the loop)."""
        fd, reader = self._fd, self._reader
        if fd is None or reader is None:
            return
        os.write(fd, self._stop_line + b"\n")
        reader.join()
        os.close(fd)
        self._fd = self._reader = None
        with contextlib.suppress(FileNotFoundError):
            self._pipe.unlink()

    def create(self, *args: Any) -> Any:
        """A C++ ``FileLog`` for the engine (``args``: none, or the session's id)."""
        prefix = _prefix(args[0] if args else None)
        for name, target in (("messages", Path(os.devnull)), ("event", self._pipe)):
            link = self._directory / f"{prefix}.{name}.current.log"
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
            link.symlink_to(target)
        log = fix.FileLog(str(self._directory), *args)
        log.thisown = False  # the engine holds it until ``destroy``
        self._logs.append(log)
        return log

    def destroy(self, log: Any) -> None:
        """The engine is done with ``log``: delete the C++ log (closes its files)."""
        address = int(log.this)
        for kept in self._logs:
            if int(kept.this) == address:
                self._logs.remove(kept)
                kept.thisown = True  # deleted with its Python side
                return

    def _read(self, fd: int) -> None:
        pending = b""
        while True:
            chunk = os.read(fd, _READ_BYTES)
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                if line == self._stop_line:
                    return
                # an event's failure must not end the reader (the engine would then wait)
                with contextlib.suppress(Exception):
                    self._sink(event_text(line.decode("utf-8", "replace")))
