"""The idempotency writer's two drivers: a SQLite connection on its own thread, asyncpg.

Each commits one group (``IdempotencyWriter``) in one transaction: the answers, then the
claims; it returns the keys whose claim won. They bypass SQLAlchemy's async layers, which
cost several times the statements themselves on this, the API's hottest path; values are
bound through the columns' own bind processors, so what is stored reads back through
SQLAlchemy exactly as if SQLAlchemy had written it.

SQLite: one plain ``sqlite3`` connection owned by one worker thread, and a whole group is
one hand-over to that thread. aiosqlite hands every call over separately (execute, fetch,
close, commit), and each hand-over waits for the GIL while the event loop is busy: under
load a group then took tens of ms (p99 68 ms measured) for well under 1 ms of work.

PostgreSQL: the asyncpg connection under a pooled SQLAlchemy connection, checked out for
as long as the writer keeps it; the claims are one ``unnest`` insert.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from execflow.backends.sql import SqlDatabase, sqlite_pragmas
from execflow.backends.sql_tables import api_idempotency
from execflow.errors import DatabaseError

__all__ = ["AnswerRow", "ClaimRow", "Driver", "Key", "open_driver"]

log = logging.getLogger(__name__)

_CHECKPOINT_EVERY = 100
"""SQLite groups committed between two background WAL checkpoints (``_Checkpointer``)."""
_CLAIMS_PER_STATEMENT = 200
"""SQLite binds at most 32766 variables in one statement (older builds: 999); 4 a claim."""

Key = tuple[str, str]
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class ClaimRow:
    """A claim to insert; one already there older than ``expired_before`` is replaced."""

    key_id: str
    idempotency_key: str
    fingerprint: str
    created_at: datetime
    expired_before: datetime

    @property
    def key(self) -> Key:
        """``(key_id, idempotency_key)``."""
        return self.key_id, self.idempotency_key


@dataclass(frozen=True, slots=True)
class AnswerRow:
    """The answer of a claimed key."""

    key_id: str
    idempotency_key: str
    status_code: int
    body: bytes
    headers: dict[str, str]
    completed_at: datetime


class Driver(Protocol):
    """One connection of the writer."""

    inline: bool
    """Whether a caller may commit its own write here (``IdempotencyWriter``): a write
    cancelled by its caller still completes."""

    async def write(self, answers: Sequence[AnswerRow], claims: Sequence[ClaimRow]) -> set[Key]:
        """Commit the answers, then the claims, in one transaction; the claims that won."""
        ...

    async def close(self, *, broken: bool) -> None:
        """Let the connection go (``broken``: it failed, do not reuse it)."""
        ...


async def open_driver(database: SqlDatabase) -> Driver:
    """A connection for the writer, on the database's engine or file."""
    engine = database.engine
    dialect = engine.dialect
    table = api_idempotency

    def bind(column: str) -> Callable[[Any], Any]:
        process = table.c[column].type.dialect_impl(dialect).bind_processor(dialect)
        return process if process is not None else _same

    if database.dialect == "postgresql":
        connection = await engine.connect()
        try:
            raw = await connection.get_raw_connection()
        except BaseException:
            await connection.close()
            raise
        return _Postgres(connection, raw.driver_connection, bind("headers"))
    path = engine.url.database
    if not path or path == ":memory:":
        raise DatabaseError("the API's idempotency writes need a SQLite file", database=path)
    return await _Sqlite.open(path, bind("created_at"), bind("headers"))


def _same(value: Any) -> Any:
    return value


# -- SQLite ------------------------------------------------------------------------------------

_SQLITE_CLAIM = (
    "INSERT INTO api_idempotency (key_id, idempotency_key, fingerprint, created_at) "
    "VALUES {values} ON CONFLICT (key_id, idempotency_key) DO NOTHING "
    "RETURNING key_id, idempotency_key"
)
_SQLITE_EXPIRE = (
    "DELETE FROM api_idempotency WHERE key_id = ? AND idempotency_key = ? AND created_at < ?"
)
_SQLITE_COMPLETE = (
    "UPDATE api_idempotency SET status_code = ?, body = ?, headers = ?, completed_at = ? "
    "WHERE key_id = ? AND idempotency_key = ?"
)


class _Sqlite:
    """A ``sqlite3`` connection used only on its own worker thread."""

    inline = True  # the thread finishes a write whose awaiting caller was cancelled

    def __init__(
        self,
        thread: _Worker,
        connection: sqlite3.Connection,
        checkpoints: _Checkpointer,
        time: Callable[[Any], Any],
        json: Callable[[Any], Any],
    ) -> None:
        self._thread = thread
        self._connection = connection
        self._checkpoints = checkpoints
        self._time = time
        self._json = json

    @classmethod
    async def open(
        cls, path: str, time: Callable[[Any], Any], json: Callable[[Any], Any]
    ) -> _Sqlite:
        thread = _Worker("api-idempotency-sqlite")
        try:
            connection = await thread.run(_connect_sqlite, path, False)
        except BaseException:
            await thread.stop()
            raise
        return cls(thread, connection, _Checkpointer(path), time, json)

    async def write(self, answers: Sequence[AnswerRow], claims: Sequence[ClaimRow]) -> set[Key]:
        # the parameters are bound here, on the loop; the thread only runs the statements
        completions = [
            (a.status_code, a.body, self._json(a.headers), self._time(a.completed_at),
             a.key_id, a.idempotency_key)
            for a in answers
        ]  # fmt: skip
        inserts = [
            (c.key, (c.key_id, c.idempotency_key, c.fingerprint, self._time(c.created_at)),
             (c.key_id, c.idempotency_key, self._time(c.expired_before)))
            for c in claims
        ]  # fmt: skip
        won = await self._thread.run(self._write, completions, inserts)
        self._checkpoints.committed()
        return won

    def _write(
        self,
        completions: list[tuple[Any, ...]],
        inserts: list[tuple[Key, tuple[Any, ...], tuple[Any, ...]]],
    ) -> set[Key]:
        conn = self._connection
        won: set[Key] = set()
        try:
            if completions:
                conn.executemany(_SQLITE_COMPLETE, completions)
            for start in range(0, len(inserts), _CLAIMS_PER_STATEMENT):
                chunk = inserts[start : start + _CLAIMS_PER_STATEMENT]
                values = ", ".join(["(?, ?, ?, ?)"] * len(chunk))
                params = [v for _, row, _ in chunk for v in row]
                rows = conn.execute(_SQLITE_CLAIM.format(values=values), params).fetchall()
                won.update((row[0], row[1]) for row in rows)
            for key, row, expire in inserts:
                # a claim there already: replaced only when it is past its expiry
                if key not in won and conn.execute(_SQLITE_EXPIRE, expire).rowcount:
                    claim = _SQLITE_CLAIM.format(values="(?, ?, ?, ?)")
                    if conn.execute(claim, row).fetchall():
                        won.add(key)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        return won

    async def close(self, *, broken: bool) -> None:
        del broken  # a SQLite file connection is closed either way
        try:
            await self._thread.run(self._connection.close)
        finally:
            await self._thread.stop()
            await self._checkpoints.close()


class _Worker:
    """One thread running the jobs handed to it in turn, each answered on the caller's loop.

    Lighter than a one-thread ``ThreadPoolExecutor`` under ``run_in_executor`` (no
    ``concurrent.futures`` future chained to the asyncio one, no pool bookkeeping): the
    writer hands every idempotency write over to its thread, two per API call.
    """

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def run(self, job: Callable[..., _T], *args: Any) -> asyncio.Future[_T]:
        """``job(*args)`` on the thread, after the jobs handed over before it."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[_T] = loop.create_future()
        self._jobs.put((loop, done, job, args))
        return done

    async def stop(self) -> None:
        """Let the thread end once its jobs are done, and wait for it."""
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join)

    def _serve(self) -> None:
        while (item := self._jobs.get()) is not None:
            loop, done, job, args = item
            try:
                result = job(*args)
            except BaseException as exc:  # noqa: BLE001 - the caller's to see
                outcome: tuple[Any, BaseException | None] = (None, exc)
            else:
                outcome = (result, None)
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits
                loop.call_soon_threadsafe(_settle, done, *outcome)


def _settle(done: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if done.cancelled():
        return  # the caller went away; the job ran all the same
    if exc is not None:
        done.set_exception(exc)
    else:
        done.set_result(result)


class _Checkpointer:
    """PASSIVE WAL checkpoints on a connection and a thread of their own.

    SQLite checkpoints on the connection whose commit took the write-ahead log past 1000
    pages: every few hundred groups, that commit also copied the log into the database
    and synced the file (groups of up to 16 ms there, measured on a loaded machine), and
    every call waiting on that group or queued behind it waited as long. The writer's
    connection does not checkpoint; this one does, every ``_CHECKPOINT_EVERY`` groups,
    beside the writes (a PASSIVE checkpoint takes no lock that a writer waits for).
    Other connections to the file keep SQLite's automatic checkpoints.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._since = 0
        self._thread: ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None
        self._running: asyncio.Future[None] | None = None

    def committed(self) -> None:
        """One more group committed; start a checkpoint when it is time and none runs."""
        self._since += 1
        if self._since < _CHECKPOINT_EVERY or (
            self._running is not None and not self._running.done()
        ):
            return
        self._since = 0
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="api-idempotency-checkpoint")
        self._running = asyncio.get_running_loop().run_in_executor(self._thread, self._checkpoint)
        self._running.add_done_callback(_checkpoint_done)

    def _checkpoint(self) -> None:
        if self._connection is None:
            self._connection = _connect_sqlite(self._path, True)
        self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    async def close(self) -> None:
        """Let the running checkpoint finish, then close the connection and the thread."""
        if self._running is not None:
            await asyncio.gather(self._running, return_exceptions=True)
        thread, self._thread = self._thread, None
        if thread is None:
            return
        try:
            if self._connection is not None:
                await asyncio.get_running_loop().run_in_executor(thread, self._connection.close)
                self._connection = None
        finally:
            await _stop(thread)


def _checkpoint_done(done: asyncio.Future[None]) -> None:
    if not done.cancelled() and done.exception() is not None:
        # the next one (or SQLite's own, on the other connections) catches up
        log.warning("api idempotency checkpoint failed", extra={"error": repr(done.exception())})


async def _stop(thread: ThreadPoolExecutor) -> None:
    """Shut a worker thread down and wait until it has ended (it is idle by then)."""
    await asyncio.to_thread(thread.shutdown, True)


def _connect_sqlite(path: str, checkpoints: bool) -> sqlite3.Connection:
    # isolation_level "" (the default): a transaction opens before the first write and
    # ends at commit(), as on SQLAlchemy's own connections to the file
    connection = sqlite3.connect(path, timeout=5.0)
    sqlite_pragmas(connection, None)
    if not checkpoints:
        connection.execute("PRAGMA wal_autocheckpoint=0")
    return connection


# -- PostgreSQL --------------------------------------------------------------------------------

_PG_CLAIM = (
    "INSERT INTO api_idempotency (key_id, idempotency_key, fingerprint, created_at) "
    "SELECT * FROM unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::timestamptz[]) "
    "ON CONFLICT (key_id, idempotency_key) DO NOTHING RETURNING key_id, idempotency_key"
)
_PG_EXPIRE = (
    "DELETE FROM api_idempotency WHERE key_id = $1 AND idempotency_key = $2 "
    "AND created_at < $3 RETURNING key_id"
)
_PG_COMPLETE = (
    "UPDATE api_idempotency SET status_code = $3, body = $4, headers = $5, completed_at = $6 "
    "WHERE key_id = $1 AND idempotency_key = $2"
)


@dataclass(slots=True)
class _Postgres:
    """asyncpg under a checked-out SQLAlchemy connection: one explicit transaction a group."""

    pooled: AsyncConnection
    connection: Any
    json: Callable[[Any], Any]
    inline = False  # a cancelled caller would roll its transaction back

    async def write(self, answers: Sequence[AnswerRow], claims: Sequence[ClaimRow]) -> set[Key]:
        conn = self.connection
        won: set[Key] = set()
        async with conn.transaction():
            if answers:
                rows = [
                    (a.key_id, a.idempotency_key, a.status_code, a.body, self.json(a.headers),
                     a.completed_at)
                    for a in answers
                ]  # fmt: skip
                await conn.executemany(_PG_COMPLETE, rows)
            if claims:
                found = await conn.fetch(
                    _PG_CLAIM,
                    [c.key_id for c in claims],
                    [c.idempotency_key for c in claims],
                    [c.fingerprint for c in claims],
                    [c.created_at for c in claims],
                )
                won = {(row[0], row[1]) for row in found}
            for claim in claims:
                if claim.key not in won and await self._replace_expired(claim):
                    won.add(claim.key)
        return won

    async def _replace_expired(self, claim: ClaimRow) -> bool:
        conn = self.connection
        gone = await conn.fetch(
            _PG_EXPIRE, claim.key_id, claim.idempotency_key, claim.expired_before
        )
        if not gone:
            return False
        found = await conn.fetch(
            _PG_CLAIM,
            [claim.key_id],
            [claim.idempotency_key],
            [claim.fingerprint],
            [claim.created_at],
        )
        return bool(found)

    async def close(self, *, broken: bool) -> None:
        try:
            if broken:
                await self.pooled.invalidate()
            await self.pooled.close()
        except (SQLAlchemyError, OSError):
            pass  # a broken connection: the pool drops it either way
