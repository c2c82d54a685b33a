"""Accounts as a header plus rows: ``account_positions``, ``account_reservations``.

DB events carry the account's header and what changed in its positions and reservations
(``domain.account_rows``), so the database keeps one row per open position and held
reservation, each at the account version that set it, and ``accounts.data`` keeps only
the header. Existing accounts are split here: their positions and reservations become
rows at the account's version, and ``rows_from`` is set to that version.

Revision ID: 0005_account_rows
Revises: 0004_lp_executions
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005_account_rows"
down_revision: str | None = "0004_lp_executions"
branch_labels: str | None = None
depends_on: str | None = None

_JSON = sa.JSON().with_variant(JSONB(), "postgresql")
_TS = sa.DateTime(timezone=True)
_KINDS = (
    ("positions", "account_positions", "open"),
    ("reservations", "account_reservations", "held"),
)

_accounts = sa.table(
    "accounts",
    sa.column("account_id", sa.String()),
    sa.column("version", sa.BigInteger()),
    sa.column("data", _JSON),
    sa.column("rows_from", sa.BigInteger()),
)


def _rows_table(name: str, live: str) -> sa.TableClause:
    return sa.table(
        name,
        sa.column("account_id", sa.String()),
        sa.column("order_id", sa.String()),
        sa.column("version", sa.BigInteger()),
        sa.column(live, sa.Boolean()),
        sa.column("data", _JSON),
        sa.column("updated_at", _TS),
    )


def upgrade() -> None:
    """Create the row tables and split every stored account into header and rows."""
    op.add_column(
        "accounts", sa.Column("rows_from", sa.BigInteger(), nullable=False, server_default="0")
    )
    for _kind, name, live in _KINDS:
        op.create_table(
            name,
            sa.Column("account_id", sa.String(128), primary_key=True),
            sa.Column("order_id", sa.String(128), primary_key=True),
            sa.Column("version", sa.BigInteger(), nullable=False),
            sa.Column(live, sa.Boolean(), nullable=False),
            sa.Column("data", _JSON, nullable=True),
            sa.Column("updated_at", _TS, nullable=False),
        )
    bind = op.get_bind()
    now = datetime.now(UTC)
    stored = bind.execute(sa.select(_accounts.c.account_id, _accounts.c.version, _accounts.c.data))
    for account_id, version, data in stored.fetchall():
        doc: dict[str, Any] = dict(data or {})
        for kind, name, live in _KINDS:
            items = doc.pop(kind, None) or []
            if items:
                bind.execute(
                    sa.insert(_rows_table(name, live)),
                    [
                        {
                            "account_id": account_id,
                            "order_id": str(item["order_id"]),
                            "version": version,
                            live: True,
                            "data": item,
                            "updated_at": now,
                        }
                        for item in items
                    ],
                )
        bind.execute(
            sa.update(_accounts)
            .where(_accounts.c.account_id == account_id)
            .values(data=doc, rows_from=version)
        )


def downgrade() -> None:
    """Fold the live rows back into each account's document, then drop the row tables."""
    bind = op.get_bind()
    stored = bind.execute(
        sa.select(
            _accounts.c.account_id, _accounts.c.version, _accounts.c.data, _accounts.c.rows_from
        )
    )
    for account_id, _version, data, rows_from in stored.fetchall():
        doc: dict[str, Any] = dict(data or {})
        for kind, name, live in _KINDS:
            table = _rows_table(name, live)
            found = bind.execute(
                sa.select(table.c.data)
                .where(
                    table.c.account_id == account_id,
                    table.c[live] == sa.true(),
                    table.c.version >= rows_from,
                )
                .order_by(table.c.order_id)
            )
            doc[kind] = [row[0] for row in found.fetchall()]
        bind.execute(
            sa.update(_accounts).where(_accounts.c.account_id == account_id).values(data=doc)
        )
    for _kind, name, _live in _KINDS:
        op.drop_table(name)
    op.drop_column("accounts", "rows_from")
