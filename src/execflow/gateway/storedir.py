"""The gateway's store directory, watched: what the session's guarantees live in.

The directory holds the engine's message store and sequence numbers, the ClOrdID ledger
and the report journal (``lps.<name>.store_dir``). Deleted or replaced under a running
gateway, none of them can be kept any more: QuickFIX's initiator then cannot open its
store on the next connect and retries in a busy loop (a core at 100 %, no log line),
and the ledger and journal write to files no one will read again. So the gateway
watches the directory and stops with a CRITICAL line when it is gone; it is not
recreated behind the operator's back, since a fresh ledger would let a request the LP
already has be sent a second time.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

__all__ = ["DirectoryWatch"]

CHECK_EVERY_S = 2.0
"""How often the directory is looked at (one ``stat``, off the loop)."""


class DirectoryWatch:
    """Whether ``path`` still names the directory it named when the watch was opened.

    The watch holds the directory open: its inode cannot be freed and handed to a
    directory made again at the same path, so "replaced" is never mistaken for "the
    same" (comparing inode numbers alone would be, on a file system that reuses them).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        held = os.fstat(self._fd)
        self._identity = (held.st_dev, held.st_ino)

    def change(self) -> str | None:
        """What happened to the directory, or ``None`` while it is the one held."""
        try:
            found = os.stat(self.path)
        except FileNotFoundError:
            return "the directory is gone"
        except OSError as exc:
            return f"the directory cannot be read: {exc.strerror or exc}"
        if (found.st_dev, found.st_ino) != self._identity:
            return "the directory was replaced by another one"
        return None

    async def lost(self, every_s: float = CHECK_EVERY_S) -> str:
        """Return, with the reason, once the path no longer names the directory held."""
        while True:
            await asyncio.sleep(every_s)
            reason = await asyncio.to_thread(self.change)
            if reason is not None:
                return reason

    def close(self) -> None:
        """Let the directory go."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
