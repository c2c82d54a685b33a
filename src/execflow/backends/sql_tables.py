"""SQLAlchemy Core tables of the execflow database (mirror of the Alembic migrations)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

__all__ = [
    "JsonText",
    "account_positions",
    "account_reservations",
    "accounts",
    "api_idempotency",
    "api_keys",
    "chain_heads",
    "dead_letters",
    "lp_executions",
    "metadata",
    "order_events",
    "orders",
]


class JsonText(str):
    """A JSON column's value already serialized (an event payload's canonical JSON, which
    the db writer computed for the audit chain): the engine's serializer stores it as is
    instead of encoding the same value a second time inside the batch's insert."""

    __slots__ = ()


_JSON = sa.JSON().with_variant(JSONB(), "postgresql")
_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)

metadata = sa.MetaData()

# An account's header (its document without positions and reservations), newest version
# winning; ``rows_from``: rows below it are superseded by a whole-account snapshot.
accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("account_id", sa.String(128), primary_key=True),
    sa.Column("version", sa.BigInteger(), nullable=False),
    sa.Column("data", _JSON, nullable=False),
    sa.Column("updated_at", _TS, nullable=False),
    sa.Column("rows_from", sa.BigInteger(), nullable=False, server_default="0"),
)


def _account_rows(name: str, live: str) -> sa.Table:
    """One row per (account, order): the account version that set it, newest winning; a
    removal is a row with ``live`` false (``domain.account_rows``)."""
    return sa.Table(
        name,
        metadata,
        sa.Column("account_id", sa.String(128), primary_key=True),
        sa.Column("order_id", sa.String(128), primary_key=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column(live, sa.Boolean(), nullable=False),
        sa.Column("data", _JSON, nullable=True),
        sa.Column("updated_at", _TS, nullable=False),
    )


account_positions = _account_rows("account_positions", "open")
account_reservations = _account_rows("account_reservations", "held")

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("order_id", sa.String(128), primary_key=True),
    sa.Column("account_id", sa.String(128), nullable=False, index=True),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("version", sa.BigInteger(), nullable=False),
    sa.Column("data", _JSON, nullable=False),
    sa.Column("updated_at", _TS, nullable=False),
)

# Append-only. ``seq`` is the insertion order; ``event_id`` is the idempotency key;
# ``chain_seq`` / ``chain_hash`` place the event in its account's audit chain (docs/audit.md).
order_events = sa.Table(
    "order_events",
    metadata,
    sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(128), nullable=False, unique=True),
    sa.Column("order_id", sa.String(128), nullable=False, index=True),
    sa.Column("account_id", sa.String(128), nullable=False),
    sa.Column("exec_id", sa.String(128), nullable=True, index=True),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("payload", _JSON, nullable=False),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("chain_seq", sa.BigInteger(), nullable=True),
    sa.Column("chain_hash", sa.String(64), nullable=True),
    sa.Index("uq_order_events_chain", "account_id", "chain_seq", unique=True),
)

# One row per account: how long its audit chain is and its last hash. The db writer locks
# it (SELECT ... FOR UPDATE) while it appends, so concurrent writers take turns per account.
chain_heads = sa.Table(
    "audit_chain_heads",
    metadata,
    sa.Column("account_id", sa.String(128), primary_key=True),
    sa.Column("length", sa.BigInteger(), nullable=False),
    sa.Column("head_hash", sa.String(64), nullable=False),
    sa.Column("updated_at", _TS, nullable=False),
)

dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("id", _SEQ, primary_key=True, autoincrement=True),
    sa.Column("queue", sa.String(255), nullable=False),
    sa.Column("reason", sa.String(128), nullable=False),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("body", sa.LargeBinary(), nullable=False),
    sa.Column("headers", _JSON, nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("replayed_at", _TS, nullable=True),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("salt", sa.LargeBinary(), nullable=False),
    sa.Column("secret_hash", sa.LargeBinary(), nullable=False),
    sa.Column("scopes", _JSON, nullable=False),
    sa.Column("accounts", _JSON, nullable=False),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("revoked_at", _TS, nullable=True),
)

# One row per (API key, Idempotency-Key): claimed by the first call (status_code NULL),
# completed with the answer every later call with the same key and body gets back.
api_idempotency = sa.Table(
    "api_idempotency",
    metadata,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("idempotency_key", sa.String(255), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("status_code", sa.Integer(), nullable=True),
    sa.Column("body", sa.LargeBinary(), nullable=True),
    sa.Column("headers", _JSON, nullable=True),
    sa.Column("created_at", _TS, nullable=False, index=True),
    sa.Column("completed_at", _TS, nullable=True),
)

# One row per request sent to an LP (``execflow.domain.lpquality.LpExecution``), written
# by that LP's gateway; ``execflow lp quality`` summarises them. Decimals as exact text.
_DEC = sa.String(40)
lp_executions = sa.Table(
    "lp_executions",
    metadata,
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
    sa.Index("ix_lp_executions_sent_at", "sent_at"),
    sa.Index("ix_lp_executions_lp_sent_at", "lp", "sent_at"),
)
