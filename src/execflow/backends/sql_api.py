"""``ApiStore`` on SQLAlchemy async Core, sharing the engine of the ``SqlDatabase``.

The idempotency claim is one ``INSERT ... ON CONFLICT DO NOTHING RETURNING``: of several
calls with the same key, on one API instance or many, exactly one gets the row back and
goes ahead; the others read the row and wait for its answer. Claims and answers are
committed in groups (``sql_api_writes.IdempotencyWriter``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from execflow.backends.api_store import (
    ApiKeyRecord,
    Claim,
    IdempotencyRecord,
    OrderQuery,
)
from execflow.backends.database import OrderRecord, StoredEvent
from execflow.backends.sql import SqlDatabase
from execflow.backends.sql_api_writes import AnswerRow, ClaimRow, IdempotencyWriter
from execflow.backends.sql_tables import api_idempotency, api_keys, order_events, orders
from execflow.errors import DatabaseError

__all__ = ["SqlApiStore"]


def _utc(value: datetime) -> datetime:
    """SQLite returns naive datetimes; every stored time is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class SqlApiStore:
    """The ``ApiStore`` port in the execflow database."""

    def __init__(self, database: SqlDatabase) -> None:
        self._database = database
        self._writes = IdempotencyWriter(database)

    @property
    def _engine(self) -> AsyncEngine:
        return self._database.engine

    async def _fetch(self, stmt: Any) -> list[Any]:
        try:
            async with self._engine.connect() as conn:
                return list((await conn.execute(stmt)).fetchall())
        except SQLAlchemyError as exc:
            raise DatabaseError("api query failed", error=repr(exc)) from exc

    async def _write(self, stmt: Any, what: str) -> list[Any]:
        try:
            async with self._engine.begin() as conn:
                result = await conn.execute(stmt)
                return list(result.fetchall()) if result.returns_rows else []
        except SQLAlchemyError as exc:
            raise DatabaseError(f"{what} failed", error=repr(exc)) from exc

    # -- keys -----------------------------------------------------------------------------

    async def add_key(self, record: ApiKeyRecord) -> None:
        """Store a new key."""
        stmt = sa.insert(api_keys).values(
            key_id=record.key_id,
            name=record.name,
            salt=record.salt,
            secret_hash=record.secret_hash,
            scopes=list(record.scopes),
            accounts=list(record.accounts),
            created_at=record.created_at,
            revoked_at=record.revoked_at,
        )
        await self._write(stmt, "api key insert")

    async def get_key(self, key_id: str) -> ApiKeyRecord | None:
        """A key by id, or None."""
        rows = await self._fetch(sa.select(api_keys).where(api_keys.c.key_id == key_id))
        return _key(rows[0]) if rows else None

    async def list_keys(self) -> list[ApiKeyRecord]:
        """Every key, oldest first."""
        stmt = sa.select(api_keys).order_by(api_keys.c.created_at, api_keys.c.key_id)
        return [_key(row) for row in await self._fetch(stmt)]

    async def revoke_key(self, key_id: str, at: datetime) -> bool:
        """Set ``revoked_at``; False when unknown or already revoked."""
        stmt = (
            sa.update(api_keys)
            .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=at)
            .returning(api_keys.c.key_id)
        )
        return bool(await self._write(stmt, "api key revoke"))

    # -- idempotency ----------------------------------------------------------------------

    async def open_writes(self) -> None:
        """Open the idempotency writer's connection (``IdempotencyWriter.open``)."""
        await self._writes.open()

    async def claim(self, record: IdempotencyRecord, expired_before: datetime) -> Claim:
        """Insert the claim unless one exists; an expired one is replaced.

        Committed with the other claims and answers queued meanwhile (``IdempotencyWriter``);
        only a key seen before reads the row there.
        """
        row = ClaimRow(
            record.key_id,
            record.idempotency_key,
            record.fingerprint,
            record.created_at,
            expired_before,
        )
        if await self._writes.claim(row):
            return Claim(won=True)
        return Claim(
            won=False, existing=await self.get_claim(record.key_id, record.idempotency_key)
        )

    async def complete(
        self,
        key_id: str,
        idempotency_key: str,
        status_code: int,
        body: bytes,
        headers: dict[str, str],
        at: datetime,
    ) -> None:
        """Record the answer (committed before this returns)."""
        await self._writes.complete(
            AnswerRow(key_id, idempotency_key, status_code, body, headers, at)
        )

    async def forget_expired(self, before: datetime, limit: int) -> int:
        """Delete at most ``limit`` claims older than ``before`` (indexed on ``created_at``).

        Bounded because the statement holds the database's write lock while it runs (on
        SQLite, the whole file's) and the calls' own claims and answers wait behind it.
        """
        table = api_idempotency
        key = sa.tuple_(table.c.key_id, table.c.idempotency_key)
        doomed = (
            sa.select(table.c.key_id, table.c.idempotency_key)
            .where(table.c.created_at < before)
            .limit(limit)
        )
        stmt = sa.delete(table).where(key.in_(doomed))
        try:
            async with self._engine.begin() as conn:
                return int((await conn.execute(stmt)).rowcount or 0)
        except SQLAlchemyError as exc:
            raise DatabaseError("idempotency expiry failed", error=repr(exc)) from exc

    async def get_claim(self, key_id: str, idempotency_key: str) -> IdempotencyRecord | None:
        """A claim and its answer (if any)."""
        table = api_idempotency
        stmt = sa.select(table).where(
            table.c.key_id == key_id, table.c.idempotency_key == idempotency_key
        )
        rows = await self._fetch(stmt)
        if not rows:
            return None
        row = rows[0]
        return IdempotencyRecord(
            key_id=row.key_id,
            idempotency_key=row.idempotency_key,
            fingerprint=row.fingerprint,
            created_at=_utc(row.created_at),
            status_code=row.status_code,
            body=None if row.body is None else bytes(row.body),
            headers=None if row.headers is None else dict(row.headers),
        )

    # -- order listings -------------------------------------------------------------------

    async def find_orders(self, query: OrderQuery) -> list[OrderRecord]:
        """Snapshots matching ``query``, newest order id first (ids grow with time)."""
        stmt = sa.select(orders).order_by(orders.c.order_id.desc()).limit(query.limit)
        if query.accounts is not None:
            stmt = stmt.where(orders.c.account_id.in_(query.accounts))
        if query.status:
            stmt = stmt.where(orders.c.status.in_(query.status))
        if query.symbol is not None:
            stmt = stmt.where(orders.c.data["symbol"].as_string() == query.symbol)
        if query.since is not None:
            stmt = stmt.where(orders.c.updated_at >= query.since)
        if query.until is not None:
            stmt = stmt.where(orders.c.updated_at < query.until)
        if query.after is not None:
            stmt = stmt.where(orders.c.order_id < query.after)
        return [
            OrderRecord(
                order_id=r.order_id,
                account_id=r.account_id,
                status=r.status,
                version=int(r.version),
                data=r.data,
                updated_at=_utc(r.updated_at),
            )
            for r in await self._fetch(stmt)
        ]

    # -- live streams ---------------------------------------------------------------------

    async def chain_positions(self, account_ids: tuple[str, ...]) -> dict[str, int]:
        """``max(chain_seq)`` per account (the unique (account, chain_seq) index answers it)."""
        stmt = (
            sa.select(order_events.c.account_id, sa.func.max(order_events.c.chain_seq))
            .where(order_events.c.account_id.in_(account_ids))
            .group_by(order_events.c.account_id)
        )
        found = {row[0]: int(row[1] or 0) for row in await self._fetch(stmt)}
        return {account: found.get(account, 0) for account in account_ids}

    async def events_after(self, account_id: str, chain_seq: int, limit: int) -> list[StoredEvent]:
        """The account's chained events after ``chain_seq``, in chain order."""
        stmt = (
            sa.select(order_events)
            .where(order_events.c.account_id == account_id, order_events.c.chain_seq > chain_seq)
            .order_by(order_events.c.chain_seq)
            .limit(limit)
        )
        return [
            StoredEvent(
                seq=int(r.seq),
                event_id=r.event_id,
                order_id=r.order_id,
                account_id=r.account_id,
                kind=r.kind,
                payload=r.payload,
                exec_id=r.exec_id,
                created_at=_utc(r.created_at),
                chain_seq=int(r.chain_seq),
                chain_hash=r.chain_hash,
            )
            for r in await self._fetch(stmt)
        ]


def _key(row: Any) -> ApiKeyRecord:
    return ApiKeyRecord(
        key_id=row.key_id,
        name=row.name,
        salt=bytes(row.salt),
        secret_hash=bytes(row.secret_hash),
        scopes=tuple(row.scopes),
        accounts=tuple(row.accounts),
        created_at=_utc(row.created_at),
        revoked_at=None if row.revoked_at is None else _utc(row.revoked_at),
    )
