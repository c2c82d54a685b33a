"""The idempotency writes of the API, committed in groups: one transaction for all that queued.

Every mutating API call writes twice: its claim before it runs and its answer after. Each
write is awaited until committed, as before; what changes is that the calls that arrive
while one transaction runs are committed together in the next one: one ``INSERT ... ON
CONFLICT DO NOTHING RETURNING`` over all their claims and one ``UPDATE`` over all their
answers. Under load that is a few transactions per dozen calls instead of two per call;
alone, a call waits for nobody (its write starts at once). On SQLite it also makes this
store's writes one writer: parallel write transactions of one process would otherwise
meet SQLite's lock and sleep in its busy handler (tens to hundreds of ms).

The guarantees are those of one write per call: a claim is committed before its call
runs; an answer is committed before it is returned; exactly one of several claims of the
same key wins, within a group (the first) as between groups, processes and instances
(the unique key of ``api_idempotency``). A group that fails is tried again one write at a
time on a fresh connection, so a write fails only for its own reason.

The writer keeps one pooled connection checked out while it has work and speaks to its
driver (aiosqlite, asyncpg) directly: these three statements are the API's hottest path,
and SQLAlchemy's async layers cost several times the statements themselves (about 1 ms
of CPU per call on SQLite, against 0.25 ms). Values are bound through the column types'
own bind processors, so what is stored reads back through SQLAlchemy exactly as before.
The connection goes back to the pool after ``_IDLE_S`` without work, and when the
database closes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from execflow.backends.sql import SqlDatabase
from execflow.backends.sql_tables import api_idempotency
from execflow.errors import DatabaseError

__all__ = ["AnswerRow", "ClaimRow", "IdempotencyWriter"]

_IDLE_S = 2.0
"""How long the writer keeps its connection once its queue is empty."""
_CLAIMS_PER_STATEMENT = 200
"""SQLite binds at most 32766 variables in one statement (older builds: 999); 4 a claim."""

_Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class ClaimRow:
    """A claim to insert; one already there older than ``expired_before`` is replaced."""

    key_id: str
    idempotency_key: str
    fingerprint: str
    created_at: datetime
    expired_before: datetime

    @property
    def key(self) -> _Key:
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


@dataclass(slots=True)
class _Write:
    row: ClaimRow | AnswerRow
    done: asyncio.Future[bool]


class _Driver(Protocol):
    """One transaction on the driver connection: the answers, then the claims; who won."""

    async def write(
        self, answers: Sequence[AnswerRow], claims: Sequence[ClaimRow]
    ) -> set[_Key]: ...

    async def rollback(self) -> None: ...


class IdempotencyWriter:
    """Claims and answers of ``api_idempotency``, committed in groups (module docstring)."""

    def __init__(self, database: SqlDatabase) -> None:
        self._database = database
        self._queued: list[_Write] = []
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._connection: AsyncConnection | None = None
        self._driver: _Driver | None = None
        self._reused = False
        database.on_close(self.close)

    async def claim(self, row: ClaimRow) -> bool:
        """Commit ``row``; whether it won (no live claim of its key was there)."""
        return await self._enqueue(row)

    async def complete(self, answer: AnswerRow) -> None:
        """Commit ``answer``."""
        await self._enqueue(answer)

    async def close(self) -> None:
        """Write what is queued, then give the connection back (the database is closing)."""
        task = self._task
        if task is None:
            return
        self._closing = True
        self._wakeup.set()
        try:
            await asyncio.shield(task)
        finally:
            self._closing = False

    async def _enqueue(self, row: ClaimRow | AnswerRow) -> bool:
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queued.append(_Write(row, done))
        self._wakeup.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="api-idempotency-writer")
        # shielded: a caller that goes away leaves its write to finish with its group
        return await asyncio.shield(done)

    async def _run(self) -> None:
        try:
            while True:
                if not self._queued:
                    if self._closing:
                        return
                    self._wakeup.clear()
                    try:
                        await asyncio.wait_for(self._wakeup.wait(), _IDLE_S)
                    except TimeoutError:
                        return
                    continue
                group, self._queued = self._queued, []
                await self._commit_group(group)
        finally:
            self._task = None
            # cancelled with its loop: nobody waits forever for a write that never ran
            for write in self._queued:
                write.done.cancel()
            self._queued = []
            await self._release()

    async def _commit_group(self, group: list[_Write]) -> None:
        try:
            won = await self._transaction(group)
        except Exception as exc:  # noqa: BLE001 - handed to the callers that wait for them
            reused = self._reused
            await self._release(broken=True)
            if reused:
                # the held connection may have gone stale (a server restart): once more
                # on a fresh one, which then fails only for a reason of its own
                await self._commit_group(group)
            elif len(group) == 1:
                _fail(group[0], exc)
            else:
                # each alone: one write's failure is not its neighbours'
                for write in group:
                    await self._commit_group([write])
            return
        firsts: dict[_Key, _Write] = {}
        for write in group:
            if isinstance(write.row, ClaimRow):
                firsts.setdefault(write.row.key, write)
        for write in group:
            row = write.row
            # a later claim of the same key in this group lost to the first one
            won_it = not isinstance(row, ClaimRow) or (row.key in won and firsts[row.key] is write)
            if not write.done.done():
                write.done.set_result(won_it)

    async def _transaction(self, group: list[_Write]) -> set[_Key]:
        answers = [w.row for w in group if isinstance(w.row, AnswerRow)]
        claims: dict[_Key, ClaimRow] = {}
        for write in group:
            if isinstance(write.row, ClaimRow):
                claims.setdefault(write.row.key, write.row)
        driver = await self._connect()
        try:
            return await driver.write(answers, list(claims.values()))
        except BaseException:
            with contextlib.suppress(Exception):  # the error that matters is the first one
                await asyncio.shield(driver.rollback())
            raise

    async def _connect(self) -> _Driver:
        self._reused = self._driver is not None
        if self._driver is None:
            self._connection = await self._database.engine.connect()
            raw = await self._connection.get_raw_connection()
            self._driver = _driver(self._database, raw.driver_connection)
        return self._driver

    async def _release(self, *, broken: bool = False) -> None:
        connection, self._connection, self._driver = self._connection, None, None
        if connection is None:
            return
        try:
            if broken:
                await connection.invalidate()
            await connection.close()
        except (SQLAlchemyError, OSError):
            pass  # a broken connection: the pool drops it either way


def _fail(write: _Write, exc: Exception) -> None:
    if write.done.done():
        return
    if not isinstance(exc, DatabaseError):
        what = "claim" if isinstance(write.row, ClaimRow) else "completion"
        exc = DatabaseError(f"idempotency {what} failed", error=repr(exc))
    write.done.set_exception(exc)


def _driver(database: SqlDatabase, connection: Any) -> _Driver:
    dialect = database.engine.dialect
    table = api_idempotency

    def bind(column: str) -> Callable[[Any], Any]:
        process = table.c[column].type.dialect_impl(dialect).bind_processor(dialect)
        return process if process is not None else _same

    if database.dialect == "postgresql":
        return _Postgres(connection, bind("headers"))
    return _Sqlite(connection, bind("created_at"), bind("headers"))


def _same(value: Any) -> Any:
    return value


@dataclass(slots=True)
class _Sqlite:
    """aiosqlite: implicit ``BEGIN`` before the first write, ``commit()`` at the end."""

    connection: Any
    time: Callable[[Any], Any]
    json: Callable[[Any], Any]

    async def write(self, answers: Sequence[AnswerRow], claims: Sequence[ClaimRow]) -> set[_Key]:
        conn = self.connection
        if answers:
            rows = [
                (a.status_code, a.body, self.json(a.headers), self.time(a.completed_at),
                 a.key_id, a.idempotency_key)
                for a in answers
            ]  # fmt: skip
            cursor = await conn.executemany(_SQLITE_COMPLETE, rows)
            await cursor.close()
        won: set[_Key] = set()
        for start in range(0, len(claims), _CLAIMS_PER_STATEMENT):
            chunk = claims[start : start + _CLAIMS_PER_STATEMENT]
            values = ", ".join(["(?, ?, ?, ?)"] * len(chunk))
            params = [
                v
                for c in chunk
                for v in (c.key_id, c.idempotency_key, c.fingerprint, self.time(c.created_at))
            ]
            found = await conn.execute_fetchall(_SQLITE_CLAIM.format(values=values), params)
            won.update((row[0], row[1]) for row in found)
        for claim in claims:
            if claim.key not in won and await self._replace_expired(claim):
                won.add(claim.key)
        await conn.commit()
        return won

    async def _replace_expired(self, claim: ClaimRow) -> bool:
        params = (claim.key_id, claim.idempotency_key, self.time(claim.expired_before))
        cursor = await self.connection.execute(_SQLITE_EXPIRE, params)
        gone = cursor.rowcount
        await cursor.close()
        if not gone:
            return False
        values = (claim.key_id, claim.idempotency_key, claim.fingerprint,
                  self.time(claim.created_at))  # fmt: skip
        found = await self.connection.execute_fetchall(
            _SQLITE_CLAIM.format(values="(?, ?, ?, ?)"), values
        )
        return bool(found)

    async def rollback(self) -> None:
        await self.connection.rollback()


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


@dataclass(slots=True)
class _Postgres:
    """asyncpg: one explicit transaction; the claims as one ``unnest`` insert."""

    connection: Any
    json: Callable[[Any], Any]

    async def write(self, answers: Sequence[AnswerRow], claims: Sequence[ClaimRow]) -> set[_Key]:
        conn = self.connection
        won: set[_Key] = set()
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

    async def rollback(self) -> None:
        """Nothing to do: ``transaction()`` rolled back when the block failed."""


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
