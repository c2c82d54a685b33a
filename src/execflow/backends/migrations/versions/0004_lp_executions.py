"""LP execution quality: ``lp_executions``, one row per request sent to an LP.

Revision ID: 0004_lp_executions
Revises: 0003_api
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_lp_executions"
down_revision: str | None = "0003_api"
branch_labels: str | None = None
depends_on: str | None = None

_TS = sa.DateTime(timezone=True)
_DEC = sa.String(40)


def upgrade() -> None:
    """Create ``lp_executions`` and its time indexes."""
    op.create_table(
        "lp_executions",
        sa.Column("lifecycle_id", sa.String(128), primary_key=True),
        sa.Column("lp", sa.String(64), nullable=False),
        sa.Column("order_id", sa.String(128), nullable=False),
        sa.Column("account_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("order_type", sa.String(16), nullable=False),
        sa.Column("qty", _DEC, nullable=False),
        sa.Column("sent_at", _TS, nullable=False),
        sa.Column("reference_px", _DEC, nullable=True),
        sa.Column("pip", _DEC, nullable=True),
        sa.Column("contract_size", _DEC, nullable=True),
        sa.Column("profit_currency", sa.String(16), nullable=True),
        sa.Column("usd_pair", sa.String(64), nullable=True),
        sa.Column("usd_bid", _DEC, nullable=True),
        sa.Column("usd_ask", _DEC, nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("first_report_at", _TS, nullable=True),
        sa.Column("filled_at", _TS, nullable=True),
        sa.Column("done_at", _TS, nullable=True),
        sa.Column("cum_qty", _DEC, nullable=False),
        sa.Column("avg_px", _DEC, nullable=True),
        sa.Column("reject_reason", sa.String(255), nullable=True),
    )
    op.create_index("ix_lp_executions_sent_at", "lp_executions", ["sent_at"])
    op.create_index("ix_lp_executions_lp_sent_at", "lp_executions", ["lp", "sent_at"])


def downgrade() -> None:
    """Drop ``lp_executions``."""
    op.drop_index("ix_lp_executions_lp_sent_at", "lp_executions")
    op.drop_index("ix_lp_executions_sent_at", "lp_executions")
    op.drop_table("lp_executions")
