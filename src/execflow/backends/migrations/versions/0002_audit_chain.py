"""Audit chain: ``order_events.chain_seq`` / ``chain_hash`` and ``audit_chain_heads``.

Events stored before this revision are chained here, per account in insertion (``seq``)
order, exactly as the db writer would have appended them (docs/audit.md). An event whose
payload has no canonical JSON form stays unchained, and ``execflow audit verify`` names
it, rather than block the upgrade.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from execflow.domain.audit import GENESIS, canonical_json, event_bytes, link
from execflow.errors import AuditError

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

_JSON = sa.JSON().with_variant(JSONB(), "postgresql")
_TS = sa.DateTime(timezone=True)
_PAGE = 1000

_events = sa.table(
    "order_events",
    sa.column("seq", sa.BigInteger()),
    sa.column("event_id", sa.String()),
    sa.column("order_id", sa.String()),
    sa.column("account_id", sa.String()),
    sa.column("exec_id", sa.String()),
    sa.column("kind", sa.String()),
    sa.column("payload", _JSON),
    sa.column("created_at", _TS),
    sa.column("chain_seq", sa.BigInteger()),
    sa.column("chain_hash", sa.String()),
)
_heads = sa.table(
    "audit_chain_heads",
    sa.column("account_id", sa.String()),
    sa.column("length", sa.BigInteger()),
    sa.column("head_hash", sa.String()),
    sa.column("updated_at", _TS),
)


def upgrade() -> None:
    """Add the chain columns and the heads table, then chain the events already stored."""
    op.add_column("order_events", sa.Column("chain_seq", sa.BigInteger(), nullable=True))
    op.add_column("order_events", sa.Column("chain_hash", sa.String(64), nullable=True))
    op.create_index(
        "uq_order_events_chain", "order_events", ["account_id", "chain_seq"], unique=True
    )
    op.create_table(
        "audit_chain_heads",
        sa.Column("account_id", sa.String(128), primary_key=True),
        sa.Column("length", sa.BigInteger(), nullable=False),
        sa.Column("head_hash", sa.String(64), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )
    _chain_existing(op.get_bind())


def _chain_existing(bind: sa.Connection) -> None:
    heads: dict[str, tuple[int, str]] = {}
    cursor = 0
    while True:
        page = bind.execute(
            sa.select(_events).where(_events.c.seq > cursor).order_by(_events.c.seq).limit(_PAGE)
        ).fetchall()
        links = [_link(row, heads) for row in page]
        chained = [entry for entry in links if entry is not None]
        if chained:
            bind.execute(
                _events.update()
                .where(_events.c.seq == sa.bindparam("b_seq"))
                .values(chain_seq=sa.bindparam("b_pos"), chain_hash=sa.bindparam("b_hash")),
                chained,
            )
        if len(page) < _PAGE:
            break
        cursor = int(page[-1].seq)
    if heads:
        now = datetime.now(UTC)
        bind.execute(
            _heads.insert(),
            [
                {"account_id": a, "length": n, "head_hash": h, "updated_at": now}
                for a, (n, h) in sorted(heads.items())
            ],
        )


def _link(row: Any, heads: dict[str, tuple[int, str]]) -> dict[str, Any] | None:
    length, previous = heads.get(row.account_id, (0, GENESIS))
    try:
        data = event_bytes(
            account_id=row.account_id,
            chain_seq=length + 1,
            created_at=row.created_at,
            event_id=row.event_id,
            exec_id=row.exec_id,
            kind=row.kind,
            order_id=row.order_id,
            payload_json=canonical_json(row.payload),
        )
    except AuditError:
        return None
    chain_hash = link(previous, data)
    heads[row.account_id] = (length + 1, chain_hash)
    return {"b_seq": row.seq, "b_pos": length + 1, "b_hash": chain_hash}


def downgrade() -> None:
    """Drop the chain (the events stay)."""
    op.drop_table("audit_chain_heads")
    op.drop_index("uq_order_events_chain", "order_events")
    with op.batch_alter_table("order_events") as batch:
        batch.drop_column("chain_hash")
        batch.drop_column("chain_seq")
