"""``Idempotency-Key``: the same key and body get the first answer back, never a second order.

The first call claims ``(API key, Idempotency-Key)`` in the database with the body's
fingerprint (an atomic insert: one winner among parallel duplicates, across instances),
runs, and stores its answer (status, body, headers). A later call with the same key:

- other body -> 422 ``idempotency_key_reused``;
- answer stored -> that answer again, with ``Idempotent-Replayed: true``;
- first call still running -> waits for its answer (``api_idempotency_wait_s``), then
  409 ``idempotency_in_progress`` with ``Retry-After``.

A claim whose first call never finished (its process died) keeps answering 409 until it
expires (``api_idempotency_ttl_s``, 24 h): its order may or may not exist, so it is not
run again; the client lists its orders instead. A claim older than the TTL is replaced
when its key comes again, and deleted by an hourly sweep otherwise. The sweep runs in the
background (started by ``prepare`` when the server starts, then by the first call
after each hour), a bounded batch per statement: awaited by a call, as it was, it added
its whole DELETE to that call (2-5 ms on an empty table, the first call of every
process) and, each hour, an hour's worth of claims deleted in one statement that held
the database's write lock while every call's claim waited.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from logging import WARNING

import orjson

from execflow.api.problems import problem_body
from execflow.backends.api_store import ApiStore, IdempotencyRecord
from execflow.clock import Clock
from execflow.errors import ApiError
from execflow.logs.events import EventLogger

__all__ = ["Answer", "Idempotency", "fingerprint"]

_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_POLL_S = 0.02
_SWEEP_EVERY_S = 3600.0
_SWEEP_BATCH = 500
"""Expired claims deleted per statement (``ApiStore.forget_expired``)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """A complete HTTP answer, as stored and replayed."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    replayed: bool = False
    kept_body: bytes | None = None
    """What a replay gets instead of ``body`` (a created key's token is shown once)."""


def fingerprint(method: str, path: str, canonical_body: bytes) -> str:
    """What "the same request" means: method, path and the canonical body."""
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), canonical_body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


class Idempotency:
    """Runs a mutating call at most once per (API key, Idempotency-Key)."""

    def __init__(
        self, store: ApiStore, clock: Clock, ttl_s: float, wait_s: float, log: EventLogger
    ) -> None:
        self._store = store
        self._clock = clock
        self._ttl = timedelta(seconds=ttl_s)
        self._wait_s = wait_s
        self._log = log
        self._swept_at: float | None = None
        self._sweeping: asyncio.Task[None] | None = None

    @staticmethod
    def check_key(value: str | None) -> str:
        """The header's value, or a 400 naming what is wrong."""
        if value is None:
            raise ApiError(400, "idempotency_key_missing", "this call needs an Idempotency-Key")
        if not _KEY.match(value):
            raise ApiError(
                400, "idempotency_key_invalid", "1 to 255 printable ASCII characters, no spaces"
            )
        return value

    async def run(
        self, key_id: str, idempotency_key: str, print_: str, call: Callable[[], Awaitable[Answer]]
    ) -> Answer:
        """The stored answer of this key, or ``call()``'s (stored before it is returned)."""
        now = self._clock.now()
        self.start_sweep()
        record = IdempotencyRecord(key_id, idempotency_key, print_, now)
        claim = await self._store.claim(record, expired_before=now - self._ttl)
        if not claim.won:
            return await self._replay(claim.existing, record)
        try:
            answer = await call()
        except Exception:
            # kept like any answer: a call that failed half-way may have placed its order,
            # so the same key must never run it again (the client lists its orders)
            failed = Answer(500, orjson.dumps(problem_body(500, "internal_error")))
            await self._store.complete(
                key_id, idempotency_key, failed.status, failed.body, {}, self._clock.now()
            )
            raise
        kept = answer.body if answer.kept_body is None else answer.kept_body
        await self._store.complete(
            key_id, idempotency_key, answer.status, kept, answer.headers, self._clock.now()
        )
        return answer

    async def prepare(self) -> None:
        """Before the server listens: the store's writes opened and the sweep started, so
        that neither waits for the first call."""
        try:
            await self._store.open_writes()
        except Exception as exc:  # noqa: BLE001 - the first claim opens them, or fails itself
            self._log.error("API:PREPARE:FAILED", exc=exc, level=WARNING)
        self.start_sweep()

    def start_sweep(self) -> None:
        """Start deleting the claims past the TTL, in the background, unless it ran within
        the hour (or still runs)."""
        mono = self._clock.monotonic()
        if self._swept_at is not None and mono - self._swept_at < _SWEEP_EVERY_S:
            return
        if self._sweeping is not None and not self._sweeping.done():
            return
        self._swept_at = mono
        before = self._clock.now() - self._ttl
        self._sweeping = asyncio.create_task(self._sweep(before), name="api-idempotency-sweep")

    async def close(self) -> None:
        """Stop a sweep still running (the rest goes at the next one)."""
        task, self._sweeping = self._sweeping, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _sweep(self, before: datetime) -> None:
        deleted = 0
        try:
            while True:
                batch = await self._store.forget_expired(before, _SWEEP_BATCH)
                deleted += batch
                if batch < _SWEEP_BATCH:
                    break
        except Exception as exc:  # noqa: BLE001 - kept for the next sweep, an hour on
            self._log.error("API:SWEEP:FAILED", exc=exc, level=WARNING, deleted=deleted)
            return
        if deleted:
            self._log.info("API:SWEEP", deleted=deleted)

    async def _replay(self, existing: IdempotencyRecord | None, mine: IdempotencyRecord) -> Answer:
        deadline = asyncio.get_running_loop().time() + self._wait_s
        while True:
            if existing is not None and existing.fingerprint != mine.fingerprint:
                raise ApiError(
                    422,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used with another request body",
                )
            if existing is not None and existing.status_code is not None:
                return Answer(
                    existing.status_code,
                    existing.body or b"",
                    dict(existing.headers or {}),
                    replayed=True,
                )
            if asyncio.get_running_loop().time() >= deadline:
                raise ApiError(
                    409,
                    "idempotency_in_progress",
                    "a call with this Idempotency-Key has not finished; retry later",
                    retry_after=1,
                )
            await asyncio.sleep(_POLL_S)
            existing = await self._store.get_claim(mine.key_id, mine.idempotency_key)
