"""Redis Cluster only: the URL, where keys land, writes on a replica, an absent cluster."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from execflow.backends.factory import make_state_store
from execflow.backends.redis_cluster_state import RedisClusterStateStore
from execflow.backends.redis_cluster_url import make_cluster_store, parse_cluster_url
from execflow.backends.state import Write
from execflow.errors import ConfigError, StoreError
from execflow.settings import Settings
from tests.backends.conftest import unique
from tests.clusters import RedisClusterServers


def test_url_names_nodes_prefix_and_options() -> None:
    parsed = parse_cluster_url(
        "redis+cluster://:p%40ss@h1:7000,h2:7001/?key_prefix=efx&copies=4&wait_replicas=0"
        "&retry_window_s=2.5"
    )
    assert parsed.nodes == (("h1", 7000), ("h2", 7001))
    assert parsed.password == "p@ss"
    assert parsed.key_prefix == "efx"
    assert parsed.options == {"copies": 4, "wait_replicas": 0, "retry_window_s": 2.5}
    # the fault harness appends its prefix straight after the hosts
    assert parse_cluster_url("redis+cluster://h1:7000?key_prefix=k").key_prefix == "k"


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://",
        "redis+cluster://:hidden@/",
        "redis+cluster://:hidden@h1/",
        "redis+cluster://:hidden@h1:notaport/",
        "redis+cluster://:hidden@h1:7000/3",
        "redis+cluster://:hidden@h1:7000/?copies=0",
        "redis+cluster://:hidden@h1:7000/?copies=many",
        "redis+cluster://:hidden@h1:7000/?replicas=1",
    ],
)
def test_a_bad_cluster_url_is_a_startup_error_naming_the_setting(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_state_store(Settings(state_url=url))
    assert caught.value.fields["setting"] == "state_url"
    assert "EXECFLOW_STATE_URL" in str(caught.value)
    assert "hidden" not in str(caught.value)


async def test_the_factory_builds_a_cluster_store_without_connecting() -> None:
    store = make_state_store(Settings(state_url="redis+cluster://h1:7000,h2:7001/?key_prefix=q"))
    assert isinstance(store, RedisClusterStateStore)
    assert store.account_key("live:6") == "q:{live:6}:account"
    assert store.price_key(3) == "q:px:{~3}"
    await store.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_no_cluster_is_a_store_error_after_the_retry_window() -> None:
    store = RedisClusterStateStore(
        [("127.0.0.1", _closed_port())],
        url="redis+cluster://127.0.0.1:1/",
        timeout_s=0.2,
        retry_window_s=0.5,
    )
    try:
        with pytest.raises(StoreError) as caught:
            await store.commit("live:6", [Write("account", "live:6", 0, {"b": 1})])
        assert "Redis Cluster unavailable: commit failed after" in str(caught.value)
    finally:
        await store.close()


@pytest.fixture
async def cluster_store(
    redis_cluster: RedisClusterServers,
) -> AsyncIterator[RedisClusterStateStore]:
    store = make_cluster_store(Settings(state_url=f"{redis_cluster.url}/?key_prefix={unique()}"))
    await store.connect()
    try:
        yield store
    finally:
        await store.flush_all()
        await store.close()


def _node_of(store: RedisClusterStateStore, key: str) -> str:
    node = store._redis.get_node_from_key(key)
    return f"{node.host}:{node.port}"


@pytest.mark.integration
async def test_quote_and_instrument_copies_cover_every_master(
    cluster_store: RedisClusterStateStore, redis_cluster: RedisClusterServers
) -> None:
    masters = {n.address for n in redis_cluster.masters()}
    assert len(masters) == 3
    prices = {_node_of(cluster_store, cluster_store.price_key(n)) for n in range(16)}
    assert prices == masters
    for group in ("standard", "pro", "vip"):
        keys = [cluster_store.instrument_copy_key(group, "EURUSD", n) for n in range(16)]
        assert {_node_of(cluster_store, key) for key in keys} == masters
    await cluster_store.put_price("EURUSD", {"bid": "1.1", "ask": "1.2"})
    await cluster_store.put_instrument("standard", "EURUSD", {"c": 1})
    # every read, whichever copy it takes, sees the write
    for _ in range(20):
        assert await cluster_store.get_price("EURUSD") == {"bid": "1.1", "ask": "1.2"}
        assert await cluster_store.get_instrument("standard", "EURUSD") == {"c": 1}


@pytest.mark.integration
async def test_the_instrument_configs_token_has_a_copy_in_each_quotes_slot(
    cluster_store: RedisClusterStateStore,
) -> None:
    for n in range(16):
        token_key = cluster_store.instruments_token_copy_key(n)
        assert key_slot(token_key.encode()) == key_slot(cluster_store.price_key(n).encode())
    await cluster_store.put_instrument("standard", "EURUSD", {"c": 1})
    # every account reads the same token, whichever copy its quotes are in
    tokens = {
        (await cluster_store.read_for_transition(f"live:{n}", "o1")).instruments_token
        for n in range(40)
    }
    assert len(tokens) == 1 and None not in tokens
    await cluster_store.put_instrument("standard", "EURUSD", {"c": 2})
    again = {
        (await cluster_store.read_for_transition(f"live:{n}", "o1")).instruments_token
        for n in range(40)
    }
    assert len(again) == 1 and again != tokens


@pytest.mark.integration
async def test_a_commit_is_on_the_replica_when_it_returns(
    cluster_store: RedisClusterStateStore, redis_cluster: RedisClusterServers
) -> None:
    for n in range(20):
        account = f"live:{n}"
        await cluster_store.commit(account, [Write("account", account, 0, {"n": n})])
        assert await cluster_store.put_lifecycle(f"lc{n}", {"kind": "OPEN"})
    seen = 0
    for node in redis_cluster.nodes:
        if redis_cluster.role(node) != "slave":
            continue
        replica = aioredis.Redis(port=node.port)
        try:
            await replica.readonly()
            for n in range(20):
                key = cluster_store.account_key(f"live:{n}")
                try:
                    version = await replica.hget(key, "v")
                except aioredis.ResponseError:  # MOVED: the slot is another shard's
                    continue
                assert version == b"1", key
                seen += 1
        finally:
            await replica.aclose()
    assert seen == 20


@pytest.mark.integration
async def test_a_master_without_replica_is_not_waited_for_but_checked_on_every_commit(
    cluster_store: RedisClusterStateStore,
    redis_cluster: RedisClusterServers,
    caplog: pytest.LogCaptureFixture,
) -> None:
    account = "live:6"
    master = _node_of(cluster_store, cluster_store.account_key(account))
    owner = next(n for n in redis_cluster.nodes if n.address == master)
    replication = redis_cluster.info(owner, "INFO", "replication")
    replica_port = int(replication["slave0"].split("port=")[1].split(",")[0])
    replica = next(n for n in redis_cluster.nodes if n.port == replica_port)
    caplog.set_level(logging.WARNING, logger="execflow.backends.redis_cluster_state")
    redis_cluster.kill(replica)
    try:
        started = time.monotonic()
        await cluster_store.commit(account, [Write("account", account, 0, {"n": 1})])
        warned = [r for r in caplog.records if "replicas of a master changed" in r.getMessage()]
        assert len(warned) == 1 and f"node={master} replicas=0" in warned[0].getMessage()
        assert time.monotonic() - started >= 0.4  # the WAIT for one replica timed out (500 ms)
        started = time.monotonic()
        for version in range(1, 6):
            await cluster_store.commit(account, [Write("account", account, version, {"n": 2})])
        assert time.monotonic() - started < 2.0  # five commits, no 500 ms wait each
        # each was checked all the same (its ROLE and the other masters' view)
        assert cluster_store.under_replicated_writes == 6
        assert len([r for r in caplog.records if "master changed" in r.getMessage()]) == 1
        # the replica back: a commit learns it (once the master lists it online), and the
        # commits after it wait for it again
        await asyncio.to_thread(redis_cluster.restore)
        version = 6
        while not [r for r in caplog.records if "replicas=1 was=0" in r.getMessage()]:
            assert version < 50, "the master's ROLE never listed its replica again"
            await cluster_store.commit(account, [Write("account", account, version, {"n": 3})])
            version += 1
            await asyncio.sleep(0.1)
        counted = cluster_store.under_replicated_writes
        await cluster_store.commit(account, [Write("account", account, version, {"n": 4})])
        assert cluster_store.under_replicated_writes == counted  # its replica acknowledged
    finally:
        await asyncio.to_thread(redis_cluster.restore)
