"""The live stream: Server-Sent Events of the order events of the accounts a key may see.

Each account's events go out in audit-chain order (``chain_seq``: 1, 2, 3, ... per
account, gap-free, committed in that order by the db writers). A stream keeps the last
position it sent per account and only ever sends "what comes after it" read from the
database, so it can neither skip nor repeat an event. It reads when woken:

* by the event feed (``backends.feed``): the db writer announces the accounts of each
  batch it committed; the ``StreamHub`` of this API process wakes the streams that
  follow one of them (no polling: an idle stream costs nothing);
* every ``api_stream_recheck_s`` as a safety net (a lost announcement), with a
  keep-alive comment.

The SSE ``id`` of every message is the whole position vector (``live:6=12;live:7=3``),
so a client that reconnects with ``Last-Event-ID`` resumes exactly after the last
message it saw, for every account of its stream, even those that had no event yet.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

import orjson

from execflow.api.views import event_out
from execflow.backends.api_store import ApiStore
from execflow.backends.database import StoredEvent
from execflow.backends.feed import EventFeed, Listening
from execflow.errors import ApiError

__all__ = ["StreamHub", "decode_position", "encode_position", "stream_events"]

_BATCH = 500


def encode_position(positions: dict[str, int]) -> str:
    """``live:6=12;live:7=3`` (accounts sorted)."""
    return ";".join(f"{account}={seq}" for account, seq in sorted(positions.items()))


def decode_position(text: str) -> dict[str, int]:
    """The position vector of a ``Last-Event-ID``; 400 when it is not one of ours."""
    positions: dict[str, int] = {}
    for part in text.split(";"):
        account, sep, seq = part.rpartition("=")
        if not sep or not account or not seq.isdigit():
            raise ApiError(400, "invalid_last_event_id", "Last-Event-ID is not a stream position")
        positions[account] = int(seq)
    return positions


class StreamHub:
    """Wakes this process's live streams when the feed announces one of their accounts."""

    def __init__(self, feed: EventFeed | None) -> None:
        self._feed = feed
        self._waiting: dict[str, set[asyncio.Event]] = {}
        self._listening: Listening | None = None
        self._starting = asyncio.Lock()

    async def _on_announce(self, accounts: frozenset[str]) -> None:
        for account in accounts:
            for wake in self._waiting.get(account, ()):
                wake.set()

    async def _start(self) -> None:
        async with self._starting:
            if self._listening is None and self._feed is not None:
                self._listening = await self._feed.listen(self._on_announce)

    @contextlib.asynccontextmanager
    async def follow(self, accounts: Iterable[str]) -> AsyncIterator[asyncio.Event]:
        """An event set whenever one of ``accounts`` has news, while the block runs."""
        await self._start()
        wake = asyncio.Event()
        chosen = list(accounts)
        for account in chosen:
            self._waiting.setdefault(account, set()).add(wake)
        try:
            yield wake
        finally:
            for account in chosen:
                waiting = self._waiting.get(account)
                if waiting is not None:
                    waiting.discard(wake)
                    if not waiting:
                        del self._waiting[account]

    async def close(self) -> None:
        """Stop listening to the feed."""
        if self._listening is not None:
            await self._listening.stop()
            self._listening = None


def _message(event: StoredEvent, positions: dict[str, int]) -> dict[str, Any]:
    """One SSE message: the event, the order after it, the account after it."""
    payload = event.payload
    body = event_out(event).model_dump(mode="json")
    order = payload.get("order")
    account = payload.get("account")
    if isinstance(order, dict):
        body["order"] = {
            k: order.get(k)
            for k in (
                "status",
                "symbol",
                "side",
                "qty",
                "cum_qty",
                "avg_px",
                "open_price",
                "close_price",
                "profit",
                "net_profit",
                "close_reason",
                "reason",
                "version",
            )
        }
        body["order"]["sl"] = order.get("sl")
        body["order"]["tp"] = order.get("tp")
    if isinstance(account, dict):
        body["account"] = {
            k: account.get(k)
            for k in ("balance", "used_margin_executed", "used_margin_all", "version")
        }
    return {
        "id": encode_position(positions),
        "event": "order_event",
        "data": orjson.dumps(body).decode(),
    }


async def stream_events(
    store: ApiStore,
    hub: StreamHub,
    accounts: tuple[str, ...],
    positions: dict[str, int],
    recheck_s: float,
) -> AsyncIterator[dict[str, Any]]:
    """SSE messages for ``accounts`` from ``positions`` on, forever (until cancelled)."""
    yield {
        "id": encode_position(positions),
        "event": "ready",
        "data": orjson.dumps({"accounts": list(accounts)}).decode(),
    }
    async with hub.follow(accounts) as wake:
        while True:
            wake.clear()  # before reading: an announcement during the read wakes us again
            more = False
            for account in accounts:
                batch = await store.events_after(account, positions[account], _BATCH)
                for event in batch:
                    positions[account] = event.chain_seq or positions[account]
                    yield _message(event, positions)
                more = more or len(batch) == _BATCH
            if more:
                continue
            try:
                async with asyncio.timeout(recheck_s):
                    await wake.wait()
            except TimeoutError:
                yield {"comment": "keep-alive"}
