"""API keys: minted once, shown once, stored as a salted scrypt hash, checked in constant time.

A key reads ``ef_<key_id>_<secret>``. The key id is public (it names the key in logs and
in the admin endpoints); the secret is 32 random bytes and is never stored: the database
keeps ``scrypt(secret, salt)``. scrypt (``hashlib.scrypt``, memory-hard) because a
leaked table must not be brute-forced cheaply, at ~tens of ms per check; that cost is
paid once per key and process, after which ``KeyVerifier`` keeps the verified key for
``api_key_cache_s`` (a revocation is seen within that time, at once on the instance
that revoked).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from execflow.backends.api_store import ApiKeyRecord, ApiStore
from execflow.clock import Clock

__all__ = [
    "ALL_ACCOUNTS",
    "ApiKey",
    "KeyVerifier",
    "MintedKey",
    "Scope",
    "mint_key",
    "parse_scopes",
]

ALL_ACCOUNTS = "*"
_PREFIX = "ef"
# scrypt cost: 16 MiB of memory and ~30-60 ms per hash on one core
_N, _R, _P = 2**14, 8, 1
_MAXMEM = 64 * 1024 * 1024


class Scope(StrEnum):
    """What a key may do: read its accounts, trade on them, administer the API."""

    READ = "read"
    TRADE = "trade"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A verified, unrevoked key: who is calling and what they may touch."""

    key_id: str
    name: str
    scopes: frozenset[Scope]
    accounts: frozenset[str]

    def may_see(self, account_id: str) -> bool:
        """Whether this key may read or change ``account_id``."""
        return ALL_ACCOUNTS in self.accounts or account_id in self.accounts

    @property
    def all_accounts(self) -> bool:
        """True for a key on every account (``*``)."""
        return ALL_ACCOUNTS in self.accounts


@dataclass(frozen=True, slots=True)
class MintedKey:
    """A new key: ``token`` is what the client sends, shown once; ``record`` is stored."""

    token: str
    record: ApiKeyRecord


def parse_scopes(values: Iterable[str]) -> tuple[Scope, ...]:
    """Scopes from text (``read,trade``); ``ValueError`` names an unknown one."""
    out: list[Scope] = []
    for value in values:
        for part in value.split(","):
            name = part.strip().lower()
            if not name:
                continue
            try:
                scope = Scope(name)
            except ValueError:
                known = ", ".join(s.value for s in Scope)
                raise ValueError(f"unknown scope {name!r}; one of {known}") from None
            if scope not in out:
                out.append(scope)
    if not out:
        raise ValueError("at least one scope is needed")
    return tuple(out)


def _hash(secret: str, salt: bytes) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, n=_N, r=_R, p=_P, maxmem=_MAXMEM, dklen=32)


def mint_key(
    name: str, scopes: Iterable[Scope], accounts: Iterable[str], created_at: datetime
) -> MintedKey:
    """A fresh random key (the slow hash runs here: call it off the event loop)."""
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_bytes(16)
    record = ApiKeyRecord(
        key_id=key_id,
        name=name,
        salt=salt,
        secret_hash=_hash(secret, salt),
        scopes=tuple(Scope(s).value for s in scopes),
        accounts=tuple(dict.fromkeys(a.strip() for a in accounts if a.strip())),
        created_at=created_at,
    )
    return MintedKey(f"{_PREFIX}_{key_id}_{secret}", record)


def split_token(token: str) -> tuple[str, str] | None:
    """``(key_id, secret)`` of a well-formed token, else None."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != _PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def _verified(record: ApiKeyRecord) -> ApiKey:
    return ApiKey(
        key_id=record.key_id,
        name=record.name,
        scopes=frozenset(Scope(s) for s in record.scopes),
        accounts=frozenset(record.accounts),
    )


@dataclass(slots=True)
class _Cached:
    key: ApiKey
    digest: bytes
    checked_at: float


class KeyVerifier:
    """Turns a presented token into an ``ApiKey``, or None (unknown, wrong, revoked).

    The slow hash runs once per key and process: calls that present a token whose check is
    still running wait for that check instead of starting their own (a burst of first
    calls on a fresh process would otherwise run scrypt once each, tens of ms of CPU
    apiece, and queue every call behind them). ``forget`` (a revocation here) also voids
    a check that was running meanwhile, so it never caches a key revoked under it.
    """

    def __init__(self, store: ApiStore, clock: Clock, cache_s: float) -> None:
        self._store = store
        self._clock = clock
        self._cache_s = cache_s
        # by key id: the sha256 of the token that passed scrypt, so a later call with
        # the same token skips the slow hash and a different secret never matches
        self._cache: dict[str, _Cached] = {}
        # checks running now, by (key id, token digest): one per token at a time
        self._running: dict[tuple[str, bytes], asyncio.Future[ApiKey | None]] = {}
        self._generation: dict[str, int] = {}

    async def verify(self, token: str) -> ApiKey | None:
        """The key behind ``token`` if it is genuine and not revoked."""
        parsed = split_token(token)
        if parsed is None:
            return None
        key_id, secret = parsed
        digest = hashlib.sha256(token.encode()).digest()
        cached = self._cache.get(key_id)
        if (
            cached is not None
            and hmac.compare_digest(cached.digest, digest)
            and self._clock.monotonic() - cached.checked_at < self._cache_s
        ):
            return cached.key
        running = self._running.get((key_id, digest))
        if running is None:
            generation = self._generation.get(key_id, 0)
            running = asyncio.ensure_future(self._check(key_id, secret, digest, generation))
            self._running[(key_id, digest)] = running
            running.add_done_callback(self._finished)
        # shielded: one caller going away does not cancel the check the others await
        return await asyncio.shield(running)

    async def _check(
        self, key_id: str, secret: str, digest: bytes, generation: int
    ) -> ApiKey | None:
        """Look the key up; the slow hash only when this token was not verified before.

        ``generation`` is the key's count of ``forget`` calls when the check began: if it
        moved meanwhile, the result is answered but not cached.
        """
        record = await self._store.get_key(key_id)
        if record is None or record.revoked_at is not None:
            self._cache.pop(key_id, None)
            return None
        cached = self._cache.get(key_id)
        if cached is None or not hmac.compare_digest(cached.digest, digest):
            expected = await asyncio.to_thread(_hash, secret, record.salt)
            if not hmac.compare_digest(expected, record.secret_hash):
                return None
        key = _verified(record)
        if self._generation.get(key_id, 0) == generation:
            self._cache[key_id] = _Cached(key, digest, self._clock.monotonic())
        return key

    def _finished(self, check: asyncio.Future[ApiKey | None]) -> None:
        for running, future in list(self._running.items()):
            if future is check:
                del self._running[running]

    def forget(self, key_id: str) -> None:
        """Drop a cached key (after revoking it here), and void a check still running.

        A call that arrives from now on starts a check of its own (and sees the revocation).
        """
        self._cache.pop(key_id, None)
        self._generation[key_id] = self._generation.get(key_id, 0) + 1
        for running in [r for r in self._running if r[0] == key_id]:
            del self._running[running]
