"""Redis-only behaviour: key layout for Redis Cluster, unreachable server."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from execflow.backends.redis_state import RedisStateStore
from execflow.backends.state import Write
from execflow.errors import StoreError
from tests.backends.conftest import unique
from tests.services import REDIS_URL, need_service

pytestmark = pytest.mark.integration


@pytest.fixture
async def redis_store() -> AsyncIterator[RedisStateStore]:
    need_service("redis")
    store = RedisStateStore(REDIS_URL, key_prefix=unique("eft"))
    await store.connect()
    try:
        yield store
    finally:
        await store.flush_all()
        await store.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_keys_share_the_account_hash_tag(redis_store: RedisStateStore) -> None:
    await redis_store.commit(
        "live:6",
        [Write("account", "live:6", 0, {"b": 1}), Write("order", "123", 0, {"s": "QUEUED"})],
    )
    await redis_store.put_lifecycle("lc9", {"kind": "OPEN"})
    await redis_store.put_instrument("std", "EURUSD", {"c": 1})
    prefix = redis_store.account_key("x").split(":")[0]
    raw = aioredis.from_url(REDIS_URL)
    try:
        keys = sorted([k.decode() async for k in raw.scan_iter(match=f"{prefix}:*")])
        assert keys == [
            f"{prefix}:instr-token",
            f"{prefix}:instr:{{std}}:EURUSD",
            f"{prefix}:lc:{{lc9}}",
            f"{prefix}:{{live:6}}:account",
            f"{prefix}:{{live:6}}:order:123",
            f"{prefix}:{{live:6}}:orders",
        ]
        assert await raw.hget(f"{prefix}:{{live:6}}:order:123", "v") == b"1"
    finally:
        await raw.aclose()


async def test_unreachable_redis_is_a_clear_store_error() -> None:
    store = RedisStateStore(
        f"redis://:s3cret@127.0.0.1:{closed_port()}/0", timeout_s=0.5, attempts=2, backoff_s=0.01
    )
    try:
        with pytest.raises(StoreError) as caught:
            await store.commit("live:6", [Write("account", "live:6", 0, {"b": 1})])
        text = str(caught.value)
        assert "Redis unreachable" in text
        assert "commit" in text
        assert "s3cret" not in text
        with pytest.raises(StoreError):
            await store.ping()
    finally:
        await store.close()


async def test_a_redis_that_never_answers_is_a_clear_store_error() -> None:
    """The client has no socket timeout (``_make_client``): each operation's own deadline,
    and the SCAN walks' socket timeout, must end the calls to a server that accepts and
    then says nothing."""
    connections: list[asyncio.StreamWriter] = []

    async def mute(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = RedisStateStore(
        f"redis://127.0.0.1:{port}/0", timeout_s=0.2, attempts=2, backoff_s=0.01
    )
    try:
        async with asyncio.timeout(20):  # a hang guard, not a measurement
            with pytest.raises(StoreError, match="Redis unreachable: commit failed after 2"):
                await store.commit("live:6", [Write("account", "live:6", 0, {"b": 1})])
            with pytest.raises(StoreError, match="get_account failed after 2"):
                await store.get_account("live:6")
            with pytest.raises(StoreError, match="list_accounts failed after 2"):
                await store.list_accounts()
            with pytest.raises(StoreError, match="flush_all failed after 2"):
                await store.flush_all()
        assert connections, "the store never reached the mute server"
    finally:
        await store.close()
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_more_operations_at_once_than_connections_wait_for_one() -> None:
    """The pool is redis-py's plain one, which refuses a checkout past ``pool_size``:
    ``_call`` must let at most that many operations in at once, the others waiting."""
    need_service("redis")
    store = RedisStateStore(REDIS_URL, pool_size=2, key_prefix=unique("eft"), attempts=1)
    await store.connect()
    try:
        accounts = [f"live:{n}" for n in range(40)]
        await asyncio.gather(
            *(
                store.commit(a, [Write("account", a, 0, {"balance": n})])
                for n, a in enumerate(accounts)
            )
        )
        found = await asyncio.gather(*(store.get_account(a) for a in accounts))
        assert [doc.version if doc else None for doc in found] == [1] * 40
        assert store._pool is not None
        assert len(store._pool._available_connections) + len(store._pool._in_use_connections) <= 2
        # the SCAN walks have two connections of their own: five walks at once wait for them
        walks = await asyncio.gather(*(store.list_accounts() for _ in range(5)))
        assert walks == [sorted(accounts)] * 5
    finally:
        await store.flush_all()
        await store.close()


async def test_a_conflicting_commit_leaves_no_trace_in_redis(redis_store: RedisStateStore) -> None:
    await redis_store.commit("live:6", [Write("order", "o1", 0, {"s": "A"})])
    with pytest.raises(StoreError):
        await redis_store.commit(
            "live:6",
            [Write("order", "o2", 0, {"s": "B"}), Write("order", "o1", 0, {"s": "C"})],
        )
    raw = aioredis.from_url(REDIS_URL)
    try:
        assert not await raw.exists(redis_store.order_key("live:6", "o2"))
        members = await raw.smembers(redis_store.orders_key("live:6"))
        assert members == {b"o1"}
    finally:
        await raw.aclose()
