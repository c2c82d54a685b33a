"""The database on SQLAlchemy 2 async Core: SQLite (aiosqlite, WAL) or PostgreSQL (asyncpg).

Schema versioning: Alembic. The revision scripts ship inside the package
(``execflow/backends/migrations/versions``); ``connect()`` upgrades to ``head``
programmatically, recording the revision in ``alembic_version``. The scripts are
loaded in a worker thread (file reads), then applied on the async connection with
``run_sync``; on PostgreSQL an advisory lock serialises processes starting together.
When ``alembic_version`` already holds the shipped head (``migrations.shipped_head``,
read from the scripts' text) there is nothing to apply and Alembic is not imported:
a pipeline process then carries neither Alembic nor Mako and Pygments (about 9 MB).

Inserts are idempotent: ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` on both
dialects, one statement built once and executed over the list of rows (SQLAlchemy sends
pages of ``batch_size`` rows), so the count of newly inserted events is exact and a
replayed event is a no-op. Events are linked into their accounts' audit chains in the
transaction that inserts them (``sql_chain``, docs/audit.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from execflow.backends.database import (
    AccountRecord,
    BatchCounts,
    DeadLetterRecord,
    EventRecord,
    OrderRecord,
    StoredDeadLetter,
    StoredEvent,
)
from execflow.backends.migrations import MIGRATIONS_DIR, shipped_head
from execflow.backends.sql_accounts import AccountStatements, read_accounts, write_accounts
from execflow.backends.sql_chain import (
    AlreadyStored,
    PreparedEvent,
    append_chained,
    prepare_events,
)
from execflow.backends.sql_tables import (
    JsonText,
    chain_heads,
    dead_letters,
    order_events,
    orders,
)
from execflow.clock import Clock, SystemClock
from execflow.domain.audit import ChainHead
from execflow.errors import AuditError, DatabaseError
from execflow.logs.masking import mask_url

__all__ = ["MIGRATIONS_DIR", "SqlDatabase", "sqlite_pragmas"]

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

log = logging.getLogger("execflow.backends.sql")

_PG_MIGRATION_LOCK = 0x65786563  # "exec"
# SQLite allows 32766 bound parameters per statement; 10 columns x 2000 rows stays below.
_SQLITE_MAX_ROWS = 2000


def _json_dumps(value: Any) -> str:
    if type(value) is JsonText:
        return value
    return orjson.dumps(value).decode()


def _utc(value: datetime) -> datetime:
    """SQLite returns naive datetimes; every stored time is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _load_scripts() -> tuple[Config, ScriptDirectory]:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    script = ScriptDirectory.from_config(config)
    script.get_heads()  # imports every revision module now, off the event loop
    return config, script


def _upgrade(
    connection: Connection, config: Config, script: ScriptDirectory, target: str = "head"
) -> None:
    from alembic.runtime.environment import EnvironmentContext

    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")

    def steps(rev: Any, _context: Any) -> Any:
        return script._upgrade_revs(target, rev)

    with EnvironmentContext(config, script, fn=steps, destination_rev=target) as env:
        env.configure(connection=connection, target_metadata=None)
        with env.begin_transaction():
            env.run_migrations()


def _current_revision(connection: Connection) -> str | None:
    """The revision recorded in ``alembic_version`` (as Alembic reads it), without Alembic."""
    if not sa.inspect(connection).has_table("alembic_version"):
        return None
    rows = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
    if len(rows) > 1:
        raise DatabaseError("the schema records several revisions", revisions=list(rows))
    return str(rows[0]) if rows else None


def _at_revision(connection: Connection, head: str | None) -> bool:
    return head is not None and _current_revision(connection) == head


class SqlDatabase:
    """The ``Database`` port on SQLAlchemy async Core."""

    def __init__(
        self,
        url: str,
        pool_size: int = 5,
        batch_size: int = 100,
        clock: Clock | None = None,
        echo: bool = False,
    ) -> None:
        self._url = url
        self._dialect = make_url(url).get_backend_name()
        if self._dialect not in {"sqlite", "postgresql"}:
            raise DatabaseError("unsupported database", url=mask_url(url))
        self._batch_size = max(1, batch_size)
        if self._dialect == "sqlite":
            self._batch_size = min(self._batch_size, _SQLITE_MAX_ROWS)
        self._pool_size = pool_size
        self._echo = echo
        self.clock: Clock = clock or SystemClock()
        self._engine: AsyncEngine | None = None
        self._statements: dict[str, Any] = {}
        self._account_statements: AccountStatements | None = None
        self._close_hooks: list[Callable[[], Awaitable[None]]] = []

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._dialect

    # -- lifecycle --------------------------------------------------------------------------

    async def connect(self) -> None:
        """Create the engine and upgrade the schema to the latest revision."""
        if self._engine is not None:
            return
        kwargs: dict[str, Any] = {"echo": self._echo, "json_serializer": _json_dumps}
        if self._dialect == "postgresql":
            kwargs["pool_size"] = self._pool_size
            kwargs["pool_pre_ping"] = True
        else:
            await asyncio.to_thread(self._ensure_sqlite_dir)
        engine = create_async_engine(self._url, **kwargs)
        if self._dialect == "sqlite":
            sa.event.listen(engine.sync_engine, "connect", sqlite_pragmas)
        try:
            head = await asyncio.to_thread(shipped_head)
            async with engine.connect() as conn:
                current = await conn.run_sync(_at_revision, head)
            if not current:
                config, script = await asyncio.to_thread(_load_scripts)
                async with engine.begin() as conn:
                    await conn.run_sync(_upgrade, config, script)
        except (SQLAlchemyError, OSError) as exc:
            await engine.dispose()
            raise DatabaseError(
                "cannot open or migrate the database", url=mask_url(self._url), error=repr(exc)
            ) from exc
        self._engine = engine
        log.info(
            "database ready",
            extra={"url": mask_url(self._url), "schema_version": await self.schema_version()},
        )

    def _ensure_sqlite_dir(self) -> None:
        database = make_url(self._url).database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)

    def on_close(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Have ``close`` await ``hook`` first (a store that keeps a connection checked out)."""
        self._close_hooks.append(hook)

    async def close(self) -> None:
        """Run the close hooks, then dispose of the pool."""
        for hook in self._close_hooks:
            await hook()
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    @property
    def engine(self) -> AsyncEngine:
        """The connected engine, for stores that share this database (``SqlApiStore``)."""
        return self._require()

    def _require(self) -> AsyncEngine:
        if self._engine is None:
            raise DatabaseError("database is not connected; call connect() first")
        return self._engine

    async def schema_version(self) -> str | None:
        """The applied Alembic revision."""
        async with self._require().connect() as conn:
            return await conn.run_sync(_current_revision)

    def _insert(self, table: sa.Table) -> Any:
        if self._dialect == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    def _statement(self, name: str) -> Any:
        """The idempotent write of ``name``, built once and executed over a list of rows.

        Executed with many parameter sets, SQLAlchemy renders it as multi-row
        ``INSERT ... VALUES ... RETURNING`` pages of ``batch_size`` rows ("insertmanyvalues")
        from one cached compilation, instead of building and compiling a statement per batch.
        The returned keys are the rows written, so the counts stay exact.
        """
        stmt = self._statements.get(name)
        if stmt is not None:
            return stmt
        if name == "events":
            stmt = (
                self._insert(order_events)
                .on_conflict_do_nothing(index_elements=["event_id"])
                .returning(order_events.c.event_id)
            )
        else:
            stmt = self._insert(orders)
            stmt = stmt.on_conflict_do_update(
                index_elements=["order_id"],
                set_={
                    c.name: stmt.excluded[c.name] for c in orders.columns if c.name != "order_id"
                },
                where=orders.c.version < stmt.excluded.version,
            ).returning(orders.c.order_id)
        stmt = stmt.execution_options(insertmanyvalues_page_size=self._batch_size)
        self._statements[name] = stmt
        return stmt

    # -- events -----------------------------------------------------------------------------

    async def insert_events(self, events: Sequence[EventRecord]) -> int:
        """Append in batches, skipping known event ids, each linked into its account's
        audit chain in the same transaction (``sql_chain``); return how many were new."""
        if not events:
            return 0
        return (await self.write_batch(events, (), ())).inserted

    async def write_batch(
        self,
        events: Sequence[EventRecord],
        orders: Sequence[OrderRecord],
        accounts: Sequence[AccountRecord],
    ) -> BatchCounts:
        """Append the events (chained, as ``insert_events``), then upsert the order
        snapshots and accounts (as ``upsert_orders``, ``upsert_accounts``): one transaction.

        One transaction rather than three: every statement of the SQLite driver is a hop
        to its thread, a transaction's begin and commit several more; and a batch is then
        stored whole or not at all. Several writers stay safe: the order and account rows
        a batch writes belong to the accounts whose chain heads it locked first (sorted),
        so two writers meeting on a row already took turns at its account's head.
        """
        now = self.clock.now()
        try:
            prepared = prepare_events(events, now)
        except AuditError as exc:
            raise DatabaseError("event cannot be chained", error=exc.message, **exc.fields) from exc
        order_rows = self._order_rows(orders, now)
        # A yield between preparing a batch and writing it: an embedded worker sharing this
        # event loop then waits for one half, not the whole (the bench's half-rate p99).
        await asyncio.sleep(0)
        try:
            try:
                async with self._require().begin() as conn:
                    return await self._write(conn, prepared, order_rows, accounts, now, False)
            except AlreadyStored:  # a redelivery: rolled back, appended again without it
                async with self._require().begin() as conn:
                    return await self._write(conn, prepared, order_rows, accounts, now, True)
        except SQLAlchemyError as exc:
            raise DatabaseError(
                "batch write failed",
                events=len(prepared),
                orders=len(order_rows),
                accounts=len(accounts),
                error=repr(exc),
            ) from exc

    async def _write(
        self,
        conn: AsyncConnection,
        prepared: list[PreparedEvent],
        order_rows: list[dict[str, Any]],
        accounts: Sequence[AccountRecord],
        now: datetime,
        lookup: bool,
    ) -> BatchCounts:
        inserted = 0
        if prepared:
            insert = self._statement("events")
            inserted = await append_chained(conn, insert, prepared, now, lookup=lookup)
        orders_changed = 0
        if order_rows:
            result = await conn.execute(self._statement(orders.name), order_rows)
            orders_changed = len(result.fetchall())
        accounts_changed = 0
        if accounts:
            statements = self._account_statements
            if statements is None:
                statements = AccountStatements(self._insert, self._batch_size)
                self._account_statements = statements
            accounts_changed = await write_accounts(conn, statements, accounts, now)
        return BatchCounts(inserted, orders_changed, accounts_changed)

    async def iter_events(
        self, after_seq: int = 0, batch_size: int = 1000
    ) -> AsyncIterator[StoredEvent]:
        """Every event after ``after_seq``, in insertion order, one batch per query."""
        cursor = after_seq
        while True:
            stmt = (
                sa.select(order_events)
                .where(order_events.c.seq > cursor)
                .order_by(order_events.c.seq)
                .limit(batch_size)
            )
            batch = await self._fetch_events(stmt)
            for event in batch:
                yield event
            if len(batch) < batch_size:
                return
            cursor = batch[-1].seq

    async def events_for_order(self, order_id: str) -> list[StoredEvent]:
        """One order's events, in insertion order."""
        stmt = (
            sa.select(order_events)
            .where(order_events.c.order_id == order_id)
            .order_by(order_events.c.seq)
        )
        return await self._fetch_events(stmt)

    # -- audit chain --------------------------------------------------------------------------

    async def chain_accounts(self) -> list[str]:
        """Every account with events or a chain head, sorted."""
        found = await self._fetch(
            sa.union(
                sa.select(order_events.c.account_id).distinct(),
                sa.select(chain_heads.c.account_id),
            )
        )
        return sorted(r[0] for r in found)

    async def iter_chain(
        self,
        account_id: str,
        after: int = 0,
        upto: int | None = None,
        batch_size: int = 1000,
    ) -> AsyncIterator[StoredEvent]:
        """One account's chained events at positions in (after, upto], in batches."""
        cursor = after
        while True:
            stmt = (
                sa.select(order_events)
                .where(order_events.c.account_id == account_id, order_events.c.chain_seq > cursor)
                .order_by(order_events.c.chain_seq)
                .limit(batch_size)
            )
            if upto is not None:
                stmt = stmt.where(order_events.c.chain_seq <= upto)
            batch = await self._fetch_events(stmt)
            for event in batch:
                yield event
            if len(batch) < batch_size:
                return
            cursor = batch[-1].chain_seq or 0

    async def first_unchained(self, account_id: str) -> StoredEvent | None:
        """The oldest event of the account without a chain position or hash."""
        stmt = (
            sa.select(order_events)
            .where(
                order_events.c.account_id == account_id,
                sa.or_(order_events.c.chain_seq.is_(None), order_events.c.chain_hash.is_(None)),
            )
            .order_by(order_events.c.seq)
            .limit(1)
        )
        found = await self._fetch_events(stmt)
        return found[0] if found else None

    async def chain_head(self, account_id: str) -> ChainHead | None:
        """The account's recorded chain head, or ``None``."""
        found = await self._fetch(
            sa.select(chain_heads).where(chain_heads.c.account_id == account_id)
        )
        if not found:
            return None
        row = found[0]
        return ChainHead(row.account_id, int(row.length), row.head_hash)

    async def count_events(self) -> int:
        """How many events are stored."""
        rows = await self._fetch(sa.select(sa.func.count()).select_from(order_events))
        return int(rows[0][0])

    async def _fetch_events(self, stmt: Any) -> list[StoredEvent]:
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
                chain_seq=None if r.chain_seq is None else int(r.chain_seq),
                chain_hash=r.chain_hash,
            )
            for r in await self._fetch(stmt)
        ]

    async def _fetch(self, stmt: Any) -> list[Any]:
        try:
            async with self._require().connect() as conn:
                result = await conn.execute(stmt)
                return list(result.fetchall())
        except SQLAlchemyError as exc:
            raise DatabaseError("query failed", error=repr(exc)) from exc

    # -- snapshots --------------------------------------------------------------------------

    async def upsert_orders(self, records: Sequence[OrderRecord]) -> int:
        """Insert or replace order snapshots with a newer version."""
        if not records:
            return 0
        return (await self.write_batch((), records, ())).orders_upserted

    @staticmethod
    def _order_rows(records: Sequence[OrderRecord], now: datetime) -> list[dict[str, Any]]:
        """The newest snapshot of each order, as rows."""
        latest: dict[str, OrderRecord] = {}
        for record in records:
            if record.order_id not in latest or latest[record.order_id].version < record.version:
                latest[record.order_id] = record
        return [
            {
                "order_id": r.order_id,
                "account_id": r.account_id,
                "status": r.status,
                "version": r.version,
                "data": r.data,
                "updated_at": r.updated_at or now,
            }
            for r in latest.values()
        ]

    async def upsert_accounts(self, records: Sequence[AccountRecord]) -> int:
        """Keep newer account headers and rows, in one transaction (``sql_accounts``)."""
        if not records:
            return 0
        return (await self.write_batch((), (), records)).accounts_upserted

    async def get_order(self, order_id: str) -> OrderRecord | None:
        """One order snapshot, or ``None``."""
        found = await self._orders(sa.select(orders).where(orders.c.order_id == order_id))
        return found[0] if found else None

    async def list_orders(self, account_id: str | None = None) -> list[OrderRecord]:
        """Order snapshots, by order id."""
        stmt = sa.select(orders).order_by(orders.c.order_id)
        if account_id is not None:
            stmt = stmt.where(orders.c.account_id == account_id)
        return await self._orders(stmt)

    async def _orders(self, stmt: Any) -> list[OrderRecord]:
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

    async def get_account(self, account_id: str) -> AccountRecord | None:
        """One account, assembled from its header and rows, or ``None``."""
        found = await self._accounts(account_id)
        return found[0] if found else None

    async def list_accounts(self) -> list[AccountRecord]:
        """Every account, assembled, by account id."""
        return await self._accounts(None)

    async def _accounts(self, account_id: str | None) -> list[AccountRecord]:
        try:
            async with self._require().connect() as conn:
                return await read_accounts(conn, account_id)
        except SQLAlchemyError as exc:
            raise DatabaseError("query failed", error=repr(exc)) from exc

    # -- dead letters -----------------------------------------------------------------------

    async def insert_dead_letter(self, record: DeadLetterRecord) -> int:
        """Keep a dead letter; return its id."""
        stmt = (
            sa.insert(dead_letters)
            .values(
                queue=record.queue,
                reason=record.reason,
                error=record.error,
                body=record.body,
                headers=dict(record.headers),
                attempts=record.attempts,
                created_at=record.created_at or self.clock.now(),
            )
            .returning(dead_letters.c.id)
        )
        try:
            async with self._require().begin() as conn:
                result = await conn.execute(stmt)
                return int(result.scalar_one())
        except SQLAlchemyError as exc:
            raise DatabaseError("dead letter insert failed", error=repr(exc)) from exc

    async def list_dead_letters(
        self, include_replayed: bool = False, limit: int = 100
    ) -> list[StoredDeadLetter]:
        """Dead letters, oldest first."""
        stmt = sa.select(dead_letters).order_by(dead_letters.c.id).limit(limit)
        if not include_replayed:
            stmt = stmt.where(dead_letters.c.replayed_at.is_(None))
        return [
            StoredDeadLetter(
                id=int(r.id),
                queue=r.queue,
                reason=r.reason,
                error=r.error,
                body=bytes(r.body),
                headers=dict(r.headers),
                attempts=int(r.attempts),
                created_at=_utc(r.created_at),
                replayed_at=None if r.replayed_at is None else _utc(r.replayed_at),
            )
            for r in await self._fetch(stmt)
        ]

    async def mark_replayed(self, dead_letter_id: int) -> bool:
        """Set ``replayed_at``; ``False`` when unknown or already replayed."""
        stmt = (
            sa.update(dead_letters)
            .where(dead_letters.c.id == dead_letter_id, dead_letters.c.replayed_at.is_(None))
            .values(replayed_at=self.clock.now())
            .returning(dead_letters.c.id)
        )
        try:
            async with self._require().begin() as conn:
                result = await conn.execute(stmt)
                return result.first() is not None
        except SQLAlchemyError as exc:
            raise DatabaseError("mark_replayed failed", error=repr(exc)) from exc


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets readers run beside the writer; a busy writer is waited for, not failed."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
