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
        assert sorted(fields) == [b"d", b"p:o1", b"p:o2", b"s", b"v"]
        assert orjson.loads(fields[b"d"]) == header(document())
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
        assert sorted(await raw.hkeys(key)) == [b"d", b"p:o2", b"s", b"v"]
    finally:
        await raw.aclose()
