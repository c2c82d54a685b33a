"""A database connected on first use, for processes that read it only on a fallback path.

The dispatcher and the workers apply reports against the state store; they read the
database only when the store lost something (an account cached back, a rebuild after
an outage). Connecting ``SqlDatabase`` at start loads SQLAlchemy, about 22 MB of every
such process's RSS (docs/benchmarks.md, "Memory"). ``DeferredDatabase`` instead checks
at start that the database answers (with the driver alone: asyncpg, in a child
interpreter, or the stdlib's sqlite3) and builds, connects and migrates the real one when
first asked for data.

Start-up failures stay what they were: if the check fails, or the URL is anything but
a plain ``postgresql+asyncpg://`` or ``sqlite+aiosqlite:///file`` one, ``connect`` connects
the real database at once, which raises the usual ``DatabaseError``.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from subprocess import DEVNULL, PIPE
from urllib.parse import urlsplit

from execflow.backends.database import (
    AccountRecord,
    BatchCounts,
    Database,
    DeadLetterRecord,
    EventRecord,
    OrderRecord,
    StoredDeadLetter,
    StoredEvent,
)
from execflow.domain.audit import ChainHead

__all__ = ["DeferredDatabase"]

_PROBE_TIMEOUT_S = 10.0


async def _answers(url: str) -> bool:
    """True if the database at ``url`` accepts a connection (driver only); else False."""
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        return False
    scheme = parts.scheme.lower()
    if scheme == "postgresql+asyncpg":
        return await _postgres_answers("postgresql" + url[len(scheme) :])
    if scheme == "sqlite+aiosqlite":
        path = url[len(scheme) + len(":///") :]
        if not path or path == ":memory:" or path.startswith("file:"):
            return False
        return await asyncio.to_thread(_sqlite_answers, path)
    return False


# Connects with asyncpg and exits 0 when ``SELECT 1`` answers. Run in a child interpreter:
# imported here, asyncpg (its protocol and exception tree) stayed loaded for the process's
# life for this one connection, ~2.8 MB of the RSS of every dispatcher and worker
# (docs/benchmarks.md, "Memory"). The DSN, password included, comes on stdin, not argv.
_POSTGRES_PROBE = """\
import asyncio, sys
import asyncpg

async def probe(dsn, timeout_s):
    connection = await asyncpg.connect(dsn, timeout=timeout_s)
    try:
        await connection.fetchval("SELECT 1")
    finally:
        await connection.close()

asyncio.run(probe(sys.stdin.read(), float(sys.argv[1])))
"""


async def _postgres_answers(dsn: str) -> bool:
    """True if the probe's child connected; any failure of it (refused, wrong password,
    no such database, a timeout) is False: ``connect`` then raises the real error."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _POSTGRES_PROBE,
        str(_PROBE_TIMEOUT_S),
        stdin=PIPE,
        stdout=DEVNULL,
        stderr=DEVNULL,
    )
    try:
        # the child's own start-up on top of the connect's timeout
        await asyncio.wait_for(child.communicate(dsn.encode()), _PROBE_TIMEOUT_S + 10.0)
    except TimeoutError:
        child.kill()
        await child.wait()
        return False
    return child.returncode == 0


def _sqlite_answers(path: str) -> bool:
    import sqlite3  # only for a SQLite URL: ~0.9 MB of RSS in a PostgreSQL deployment's processes

    try:
        with open(path, "rb"):
            pass
        connection = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=_PROBE_TIMEOUT_S)
        try:
            connection.execute("SELECT 1")
        finally:
            connection.close()
    except (OSError, sqlite3.Error):
        return False
    return True


class DeferredDatabase:
    """The ``Database`` port over one built by ``build`` on first use (see the module doc)."""

    def __init__(self, url: str, build: Callable[[], Database]) -> None:
        self._url = url
        self._build = build
        self._real: Database | None = None
        self._lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        """Whether the real database has been built and connected."""
        return self._real is not None

    async def connect(self) -> None:
        """Check that the database answers; connect the real one now if it does not."""
        if self._real is None and not await _answers(self._url):
            await self._ready()

    async def _ready(self) -> Database:
        if self._real is not None:
            return self._real
        async with self._lock:
            if self._real is None:
                database = self._build()
                await database.connect()
                self._real = database
            return self._real

    async def close(self) -> None:
        """Close the real database if it was connected."""
        if self._real is not None:
            await self._real.close()
            self._real = None

    async def schema_version(self) -> str | None:
        """The applied revision (connects the real database)."""
        return await (await self._ready()).schema_version()

    async def insert_events(self, events: Sequence[EventRecord]) -> int:
        """See ``Database.insert_events``."""
        return await (await self._ready()).insert_events(events)

    async def iter_events(
        self, after_seq: int = 0, batch_size: int = 1000
    ) -> AsyncIterator[StoredEvent]:
        """See ``Database.iter_events``."""
        database = await self._ready()
        async for event in database.iter_events(after_seq, batch_size):
            yield event

    async def events_for_order(self, order_id: str) -> list[StoredEvent]:
        """See ``Database.events_for_order``."""
        return await (await self._ready()).events_for_order(order_id)

    async def count_events(self) -> int:
        """See ``Database.count_events``."""
        return await (await self._ready()).count_events()

    async def chain_accounts(self) -> list[str]:
        """See ``Database.chain_accounts``."""
        return await (await self._ready()).chain_accounts()

    async def iter_chain(
        self,
        account_id: str,
        after: int = 0,
        upto: int | None = None,
        batch_size: int = 1000,
    ) -> AsyncIterator[StoredEvent]:
        """See ``Database.iter_chain``."""
        database = await self._ready()
        async for event in database.iter_chain(account_id, after, upto, batch_size):
            yield event

    async def first_unchained(self, account_id: str) -> StoredEvent | None:
        """See ``Database.first_unchained``."""
        return await (await self._ready()).first_unchained(account_id)

    async def chain_head(self, account_id: str) -> ChainHead | None:
        """See ``Database.chain_head``."""
        return await (await self._ready()).chain_head(account_id)

    async def upsert_orders(self, orders: Sequence[OrderRecord]) -> int:
        """See ``Database.upsert_orders``."""
        return await (await self._ready()).upsert_orders(orders)

    async def upsert_accounts(self, accounts: Sequence[AccountRecord]) -> int:
        """See ``Database.upsert_accounts``."""
        return await (await self._ready()).upsert_accounts(accounts)

    async def write_batch(
        self,
        events: Sequence[EventRecord],
        orders: Sequence[OrderRecord],
        accounts: Sequence[AccountRecord],
    ) -> BatchCounts:
        """See ``Database.write_batch``."""
        return await (await self._ready()).write_batch(events, orders, accounts)

    async def get_order(self, order_id: str) -> OrderRecord | None:
        """See ``Database.get_order``."""
        return await (await self._ready()).get_order(order_id)

    async def list_orders(self, account_id: str | None = None) -> list[OrderRecord]:
        """See ``Database.list_orders``."""
        return await (await self._ready()).list_orders(account_id)

    async def get_account(self, account_id: str) -> AccountRecord | None:
        """See ``Database.get_account``."""
        return await (await self._ready()).get_account(account_id)

    async def list_accounts(self) -> list[AccountRecord]:
        """See ``Database.list_accounts``."""
        return await (await self._ready()).list_accounts()

    async def insert_dead_letter(self, record: DeadLetterRecord) -> int:
        """See ``Database.insert_dead_letter``."""
        return await (await self._ready()).insert_dead_letter(record)

    async def list_dead_letters(
        self, include_replayed: bool = False, limit: int = 100
    ) -> list[StoredDeadLetter]:
        """See ``Database.list_dead_letters``."""
        return await (await self._ready()).list_dead_letters(include_replayed, limit)

    async def mark_replayed(self, dead_letter_id: int) -> bool:
        """See ``Database.mark_replayed``."""
        return await (await self._ready()).mark_replayed(dead_letter_id)
