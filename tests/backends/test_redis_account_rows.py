"""Redis-only: an account kept as rows is one hash; one stored by an older release is read
whole and converted by its next whole write (no rebuild needed after an upgrade)."""

from __future__ import annotations

import orjson
import pytest
import redis.asyncio as aioredis

from execflow.backends.redis_state import RedisStateStore
from execflow.backends.state import RowChanges, Versioned, Write
from execflow.errors import StoreError
from tests.backends.test_redis_state import redis_store
from tests.backends.test_state_rows_contract import ACCOUNT, document, header, position
from tests.services import REDIS_URL

pytestmark = pytest.mark.integration

__all__ = ["redis_store"]


async def test_rows_live_in_the_account_hash(redis_store: RedisStateStore) -> None:
    await redis_store.commit(ACCOUNT, [Write("account", ACCOUNT, 0, document("o1", "o2"))])
    raw = aioredis.from_url(REDIS_URL)
    key = redis_store.account_key(ACCOUNT)
    try:
        fields = await raw.hgetall(key)
        assert sorted(fields) == [b"h", b"p:o1", b"p:o2", b"s", b"v"]
        assert orjson.loads(fields[b"h"]) == header(document())
        assert orjson.loads(fields[b"p:o2"]) == position("o2")
        prefix = key.split(":")[0]
        assert sorted([k.decode() async for k in raw.scan_iter(match=f"{prefix}:*")]) == [key]
    finally:
        await raw.aclose()


async def test_an_account_of_the_old_layout_is_read_whole_then_converted(
    redis_store: RedisStateStore,
) -> None:
    key = redis_store.account_key(ACCOUNT)
    old = document("o1", "o2")
    raw = aioredis.from_url(REDIS_URL)
    try:
        await raw.hset(key, mapping={"v": 7, "d": orjson.dumps(old)})
        assert await redis_store.get_account(ACCOUNT) == Versioned(7, old)
        assert await redis_store.get_account_head(ACCOUNT) == Versioned(7, old)
        reads = await redis_store.read_for_transition(ACCOUNT, "o1")
        assert reads.account == Versioned(7, old)
        with pytest.raises(StoreError):  # a rows write needs the rows layout
            await redis_store.commit(
                ACCOUNT, [Write("account", ACCOUNT, 7, header(old), RowChanges({}, ["o1"], "s"))]
            )
        await redis_store.commit(ACCOUNT, [Write("account", ACCOUNT, 7, document("o2"))])
        after = await redis_store.get_account(ACCOUNT)
        assert after is not None and after.version == 8 and after.stamp
        assert after.data == document("o2")
        assert sorted(await raw.hkeys(key)) == [b"h", b"p:o2", b"s", b"v"]
    finally:
        await raw.aclose()


async def test_an_older_release_finds_no_document_in_an_account_kept_as_rows(
    redis_store: RedisStateStore,
) -> None:
    """An older release reads an account as ``HMGET v d`` and takes ``d`` for the whole
    document. Kept as rows, the header is not ``d``: during a rolling upgrade (or after a
    rollback) such a process finds no account (refuses, retries or falls back to a create
    that conflicts on ``v``) instead of an account with no positions, whose margin it
    would misjudge and whose whole write would drop every position."""
    key = redis_store.account_key(ACCOUNT)
    raw = aioredis.from_url(REDIS_URL)
    try:
        await redis_store.commit(ACCOUNT, [Write("account", ACCOUNT, 0, document("o1", "o2"))])
        assert await raw.hmget(key, ["v", "d"]) == [b"1", None]
        changed = RowChanges({"o3": position("o3")}, ["o1"], "s-2")
        await redis_store.commit(
            ACCOUNT, [Write("account", ACCOUNT, 1, header(document(balance="9.00")), changed)]
        )
        assert await raw.hmget(key, ["v", "d"]) == [b"2", None]
        assert await redis_store.get_account(ACCOUNT) == Versioned(
            2, {**document(balance="9.00"), "positions": [position("o2"), position("o3")]}, "s-2"
        )
        # a whole write without rows keeps the document in d again, and nothing of the rows
        await redis_store.commit(ACCOUNT, [Write("account", ACCOUNT, 2, {"balance": "2.00"})])
        assert sorted(await raw.hkeys(key)) == [b"d", b"v"]
        assert await redis_store.get_account_head(ACCOUNT) == Versioned(3, {"balance": "2.00"})
    finally:
        await raw.aclose()
