"""Accounts in SQL: a header row plus one row per position and reservation.

``upsert_accounts`` writes, in one transaction, each account's newest header (its
version newest wins; ``rows_from`` only ever rises) and each row's newest version
(``account_positions``, ``account_reservations``; ``domain.account_rows``). Every write
is a conditional upsert, so several db writers, any order and redeliveries agree.
Reads assemble the whole account document from the header and the live rows at or above
``rows_from``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from execflow.backends.database import AccountRecord
from execflow.backends.sql_tables import account_positions, account_reservations, accounts
from execflow.domain.account_rows import (
    KINDS,
    AccountRow,
    RowKind,
    assemble,
    header_of,
    is_snapshot,
    rows_of_snapshot,
)

__all__ = ["AccountStatements", "read_accounts", "write_accounts"]

_TABLES: dict[RowKind, tuple[sa.Table, str]] = {
    "positions": (account_positions, "open"),
    "reservations": (account_reservations, "held"),
}


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class AccountStatements:
    """The three conditional upserts, built once per database (``insert`` is the dialect's)."""

    def __init__(self, insert: Callable[[sa.Table], Any], page_size: int) -> None:
        stmt = insert(accounts)
        new = stmt.excluded
        newer = accounts.c.version < new.version
        rises = accounts.c.rows_from < new.rows_from

        def newest(name: str) -> Any:
            return sa.case((newer, new[name]), else_=accounts.c[name])

        self.header = (
            stmt.on_conflict_do_update(
                index_elements=["account_id"],
                set_={
                    "version": newest("version"),
                    "data": newest("data"),
                    "updated_at": newest("updated_at"),
                    "rows_from": sa.case((rises, new.rows_from), else_=accounts.c.rows_from),
                },
                where=sa.or_(newer, rises),
            )
            .returning(accounts.c.account_id)
            .execution_options(insertmanyvalues_page_size=page_size)
        )
        self.rows: dict[RowKind, Any] = {}
        for kind, (table, live) in _TABLES.items():
            row_stmt = insert(table)
            self.rows[kind] = (
                row_stmt.on_conflict_do_update(
                    index_elements=["account_id", "order_id"],
                    set_={
                        "version": row_stmt.excluded.version,
                        live: row_stmt.excluded[live],
                        "data": row_stmt.excluded.data,
                        "updated_at": row_stmt.excluded.updated_at,
                    },
                    where=table.c.version < row_stmt.excluded.version,
                )
                # No RETURNING: nobody counts the rows, and without it the driver's plain
                # executemany runs instead of multi-row VALUES pages read back row by row.
                .execution_options(insertmanyvalues_page_size=page_size)
            )


def _plan(
    records: Sequence[AccountRecord], now: datetime
) -> tuple[list[dict[str, Any]], dict[RowKind, list[dict[str, Any]]]]:
    """The newest header per account (``rows_from`` at its highest) and row per order."""
    headers: dict[str, dict[str, Any]] = {}
    rows: dict[tuple[str, RowKind, str], AccountRow] = {}
    for record in records:
        rows_from = record.rows_from
        extra: list[AccountRow] = list(record.rows)
        if is_snapshot(record.data):
            rows_from = max(rows_from, record.version)
            extra.extend(rows_of_snapshot(record.account_id, record.data))
        known = headers.get(record.account_id)
        if known is None or known["version"] < record.version:
            headers[record.account_id] = {
                "account_id": record.account_id,
                "version": record.version,
                "data": record.data,  # its header taken below, once per account
                "updated_at": record.updated_at or now,
                "rows_from": max(rows_from, known["rows_from"] if known else 0),
            }
        else:
            known["rows_from"] = max(known["rows_from"], rows_from)
        for row in extra:
            key = (row.account_id, row.kind, row.order_id)
            seen = rows.get(key)
            if seen is None or seen.version < row.version:
                rows[key] = row
    # One order of locks for every writer (accounts, then rows, each by key): two writers
    # upserting the same accounts in one transaction each can then never deadlock.
    by_kind: dict[RowKind, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    for _key, row in sorted(rows.items()):
        by_kind[row.kind].append(
            {
                "account_id": row.account_id,
                "order_id": row.order_id,
                "version": row.version,
                _TABLES[row.kind][1]: row.live,
                "data": None if row.data is None else dict(row.data),
                "updated_at": now,
            }
        )
    for header in headers.values():
        header["data"] = header_of(header["data"])
    return [headers[a] for a in sorted(headers)], by_kind


async def write_accounts(
    conn: AsyncConnection,
    statements: AccountStatements,
    records: Sequence[AccountRecord],
    now: datetime,
) -> int:
    """Upsert headers and rows (the caller's transaction); return how many headers changed."""
    headers, by_kind = _plan(records, now)
    changed = 0
    if headers:
        changed = len((await conn.execute(statements.header, headers)).fetchall())
    for kind, rows in by_kind.items():
        if rows:
            await conn.execute(statements.rows[kind], rows)
    return changed


async def read_accounts(
    conn: AsyncConnection, account_id: str | None = None
) -> list[AccountRecord]:
    """Accounts (one, or all by id) with their rows at or above ``rows_from``, assembled."""
    stmt = sa.select(accounts).order_by(accounts.c.account_id)
    if account_id is not None:
        stmt = stmt.where(accounts.c.account_id == account_id)
    headers = (await conn.execute(stmt)).fetchall()
    if not headers:
        return []
    rows: dict[str, list[AccountRow]] = {h.account_id: [] for h in headers}
    for kind, (table, live) in _TABLES.items():
        found = (
            sa.select(
                table.c.account_id, table.c.order_id, table.c.version, table.c[live], table.c.data
            )
            .join(accounts, accounts.c.account_id == table.c.account_id)
            .where(table.c.version >= accounts.c.rows_from)
        )
        if account_id is not None:
            found = found.where(table.c.account_id == account_id)
        for r in (await conn.execute(found)).fetchall():
            rows[r[0]].append(AccountRow(r[0], kind, r[1], int(r[2]), bool(r[3]), r[4]))
    return [
        AccountRecord(
            account_id=h.account_id,
            version=int(h.version),
            data=assemble(h.data, rows[h.account_id], int(h.rows_from)),
            updated_at=_utc(h.updated_at),
            rows=tuple(rows[h.account_id]),
            rows_from=int(h.rows_from),
        )
        for h in headers
    ]
