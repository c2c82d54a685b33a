"""The store's connections pack a command in one call into hiredis, byte for byte as
redis-py does, and fall back to redis-py for anything hiredis does not take."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.exceptions import DataError

from execflow.backends.redis_state import RedisStateStore, _Connection, _OneCallPacking

# what the store sends: names, keys and fields as str, values as bytes, versions as int
_ARGUMENT = st.one_of(
    st.text(),
    st.binary(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False),
)


def _packed(connection: aioredis.Connection, *args: Any) -> bytes:
    return b"".join(connection.pack_command(*args))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["EVALSHA", "HGETALL", "SET"]), st.lists(_ARGUMENT, max_size=20))
def test_a_command_is_packed_as_redis_py_packs_it(name: str, args: list[Any]) -> None:
    assert _packed(_Connection(), name, *args) == _packed(aioredis.Connection(), name, *args)


@pytest.mark.parametrize(
    "args",
    [
        ("CLIENT SETINFO", "LIB-NAME", "redis-py"),  # two words: redis-py splits them
        (b"CONFIG GET", "maxmemory"),
        ("SET", bytearray(b"k"), memoryview(b"v")),
    ],
)
def test_what_hiredis_does_not_take_goes_redis_py_s_way(args: tuple[Any, ...]) -> None:
    assert _packed(_Connection(), *args) == _packed(aioredis.Connection(), *args)


def test_a_bool_is_refused_as_redis_py_refuses_it() -> None:
    with pytest.raises(DataError, match="bool"):
        _Connection().pack_command("SET", "k", True)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/0", aioredis.Connection),
        ("rediss://127.0.0.1:6380/0", aioredis.SSLConnection),
        ("unix:///tmp/redis.sock", aioredis.UnixDomainSocketConnection),
    ],
)
async def test_the_pool_keeps_the_connection_kind_of_the_url(url: str, expected: type) -> None:
    store = RedisStateStore(url)
    try:
        assert store._pool is not None
        chosen = store._pool.connection_class
        assert issubclass(chosen, expected)
        assert issubclass(chosen, _OneCallPacking)
    finally:
        await store.close()
