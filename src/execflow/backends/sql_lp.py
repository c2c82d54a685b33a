"""``LpExecutionStore`` on SQLAlchemy async Core, sharing the engine of the ``SqlDatabase``.

A record is written whole (``INSERT ... ON CONFLICT (lifecycle_id) DO UPDATE``): its
LP's gateway is its one writer and always holds the latest state. Decimals are stored as
their exact text, times as ``timestamptz`` (SQLite: UTC text).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from execflow.backends.sql import SqlDatabase
from execflow.backends.sql_tables import lp_executions
from execflow.domain.enums import LpOrderType, RequestKind, Side
from execflow.domain.lpquality import ExecutionStatus, LpExecution
from execflow.errors import DatabaseError

__all__ = ["SqlLpExecutionStore"]

_TABLE = lp_executions
_KEY = "lifecycle_id"


def _text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def _dec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _utc(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; every stored time is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _row(e: LpExecution) -> dict[str, Any]:
    return {
        "lifecycle_id": e.lifecycle_id,
        "lp": e.lp,
        "order_id": e.order_id,
        "account_id": e.account_id,
        "kind": e.kind.value,
        "symbol": e.symbol,
        "side": e.side.value,
        "order_type": e.order_type.value,
        "qty": _text(e.qty),
        "sent_at": e.sent_at,
        "reference_px": _text(e.reference_px),
        "pip": _text(e.pip),
        "contract_size": _text(e.contract_size),
        "profit_currency": e.profit_currency,
        "usd_pair": e.usd_pair,
        "usd_bid": _text(e.usd_bid),
        "usd_ask": _text(e.usd_ask),
        "status": e.status.value,
        "first_report_at": e.first_report_at,
        "filled_at": e.filled_at,
        "done_at": e.done_at,
        "cum_qty": _text(e.cum_qty),
        "avg_px": _text(e.avg_px),
        "reject_reason": e.reject_reason,
    }


def _execution(r: Any) -> LpExecution:
    sent_at = _utc(r.sent_at)
    assert sent_at is not None  # NOT NULL
    return LpExecution(
        lifecycle_id=r.lifecycle_id,
        lp=r.lp,
        order_id=r.order_id,
        account_id=r.account_id,
        kind=RequestKind(r.kind),
        symbol=r.symbol,
        side=Side(r.side),
        order_type=LpOrderType(r.order_type),
        qty=Decimal(r.qty),
        sent_at=sent_at,
        reference_px=_dec(r.reference_px),
        pip=_dec(r.pip),
        contract_size=_dec(r.contract_size),
        profit_currency=r.profit_currency,
        usd_pair=r.usd_pair,
        usd_bid=_dec(r.usd_bid),
        usd_ask=_dec(r.usd_ask),
        status=ExecutionStatus(r.status),
        first_report_at=_utc(r.first_report_at),
        filled_at=_utc(r.filled_at),
        done_at=_utc(r.done_at),
        cum_qty=Decimal(r.cum_qty),
        avg_px=_dec(r.avg_px),
        reject_reason=r.reject_reason,
    )


class SqlLpExecutionStore:
    """The ``LpExecutionStore`` port in the execflow database."""

    def __init__(self, database: SqlDatabase) -> None:
        self._database = database
        self._upsert: Any = None

    def _statement(self) -> Any:
        """The whole-row upsert, built once (compiled once) and executed over many rows."""
        if self._upsert is None:
            dialect = postgresql if self._database.dialect == "postgresql" else sqlite
            stmt = dialect.insert(_TABLE)
            stmt = stmt.on_conflict_do_update(
                index_elements=[_KEY],
                set_={c.name: stmt.excluded[c.name] for c in _TABLE.columns if c.name != _KEY},
            )
            self._upsert = stmt
        return self._upsert

    async def upsert(self, executions: Sequence[LpExecution]) -> int:
        """Insert or replace each record; the last of a lifecycle id in the batch wins."""
        latest = {e.lifecycle_id: e for e in executions}
        if not latest:
            return 0
        rows = [_row(e) for e in latest.values()]
        try:
            async with self._database.engine.begin() as conn:
                await conn.execute(self._statement(), rows)
        except SQLAlchemyError as exc:
            raise DatabaseError(
                "lp_executions upsert failed", rows=len(rows), error=repr(exc)
            ) from exc
        return len(rows)

    async def get(self, lifecycle_id: str) -> LpExecution | None:
        """One record, or None."""
        rows = await self._fetch(sa.select(_TABLE).where(_TABLE.c.lifecycle_id == lifecycle_id))
        return _execution(rows[0]) if rows else None

    async def iter(
        self,
        since: datetime | None = None,
        lp: str | None = None,
        batch_size: int = 1000,
    ) -> AsyncIterator[LpExecution]:
        """Records by (sent_at, lifecycle_id), one keyset page per query."""
        cursor: tuple[datetime, str] | None = None
        while True:
            stmt = sa.select(_TABLE)
            if since is not None:
                stmt = stmt.where(_TABLE.c.sent_at >= since)
            if lp is not None:
                stmt = stmt.where(_TABLE.c.lp == lp)
            if cursor is not None:
                stmt = stmt.where(
                    sa.tuple_(_TABLE.c.sent_at, _TABLE.c.lifecycle_id) > sa.tuple_(*cursor)
                )
            stmt = stmt.order_by(_TABLE.c.sent_at, _TABLE.c.lifecycle_id).limit(batch_size)
            rows = await self._fetch(stmt)
            for row in rows:
                yield _execution(row)
            if len(rows) < batch_size:
                return
            cursor = (rows[-1].sent_at, rows[-1].lifecycle_id)

    async def _fetch(self, stmt: Any) -> list[Any]:
        try:
            async with self._database.engine.connect() as conn:
                return list((await conn.execute(stmt)).fetchall())
        except SQLAlchemyError as exc:
            raise DatabaseError("lp_executions query failed", error=repr(exc)) from exc
