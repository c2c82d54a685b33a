"""The platform API's own records: hashed API keys, idempotency claims, order queries.

They live in the execflow database (``api_keys``, ``api_idempotency``), so every API
instance sees the same keys and the same idempotency claims, and both outlive a restart.
Implementation: ``SqlApiStore`` (``execflow.backends.sql_api``), on the engine of the
pipeline's ``SqlDatabase``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from execflow.backends.database import OrderRecord, StoredEvent

__all__ = ["ApiKeyRecord", "ApiStore", "Claim", "IdempotencyRecord", "OrderQuery"]


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """One API key as stored: never the secret, only its salted slow hash."""

    key_id: str
    name: str
    salt: bytes
    secret_hash: bytes
    scopes: tuple[str, ...]
    accounts: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """A claimed Idempotency-Key; ``status_code`` is None while the first call runs."""

    key_id: str
    idempotency_key: str
    fingerprint: str
    created_at: datetime
    status_code: int | None = None
    body: bytes | None = None
    headers: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of claiming a key: ``won`` (go ahead) or the record already there."""

    won: bool
    existing: IdempotencyRecord | None = None


@dataclass(frozen=True, slots=True)
class OrderQuery:
    """Filters of an order listing; ``after`` is the last order id of the previous page."""

    accounts: tuple[str, ...] | None
    status: tuple[str, ...] = ()
    symbol: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    after: str | None = None
    limit: int = 100


class ApiStore(Protocol):
    """Keys, idempotency claims and order listings of the platform API."""

    async def add_key(self, record: ApiKeyRecord) -> None:
        """Store a new key."""
        ...

    async def get_key(self, key_id: str) -> ApiKeyRecord | None:
        """A key by id (revoked ones too), or None."""
        ...

    async def list_keys(self) -> list[ApiKeyRecord]:
        """Every key, oldest first."""
        ...

    async def revoke_key(self, key_id: str, at: datetime) -> bool:
        """Revoke a key; False when unknown or already revoked."""
        ...

    async def open_writes(self) -> None:
        """Open what claims and answers are written through now, not with the first claim."""
        ...

    async def claim(self, record: IdempotencyRecord, expired_before: datetime) -> Claim:
        """Atomically claim ``(key_id, idempotency_key)``; a claim older than
        ``expired_before`` is replaced."""
        ...

    async def forget_expired(self, before: datetime, limit: int) -> int:
        """Delete at most ``limit`` claims older than ``before``; how many went."""
        ...

    async def complete(
        self,
        key_id: str,
        idempotency_key: str,
        status_code: int,
        body: bytes,
        headers: dict[str, str],
        at: datetime,
    ) -> None:
        """Record the answer of a claimed key."""
        ...

    async def get_claim(self, key_id: str, idempotency_key: str) -> IdempotencyRecord | None:
        """A claim and its answer (if any)."""
        ...

    async def find_orders(self, query: OrderQuery) -> list[OrderRecord]:
        """Order snapshots matching ``query``, newest order id first, at most ``limit``."""
        ...

    async def chain_positions(self, account_ids: tuple[str, ...]) -> dict[str, int]:
        """Each account's last audit-chain position (0 without events)."""
        ...

    async def events_after(self, account_id: str, chain_seq: int, limit: int) -> list[StoredEvent]:
        """An account's events after position ``chain_seq``, in chain order."""
        ...
