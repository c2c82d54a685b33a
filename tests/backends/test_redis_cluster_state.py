"""Redis Cluster only: the URL, where keys land, writes on a replica, an absent cluster."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from execflow.backends.factory import make_state_store
from execflow.backends.redis_cluster_state import RedisClusterStateStore, slot_owner
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
async def test_a_master_without_replica_is_not_waited_on_every_commit(
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
        warned = [r for r in caplog.records if "not yet on enough replicas" in r.getMessage()]
        assert len(warned) == 1 and master in warned[0].getMessage()
        assert time.monotonic() - started >= 0.4  # the WAIT timed out (500 ms)
        started = time.monotonic()
        for version in range(1, 6):
            await cluster_store.commit(account, [Write("account", account, version, {"n": 2})])
        assert time.monotonic() - started < 2.0  # five commits, no 500 ms wait each
        assert len([r for r in caplog.records if "enough replicas" in r.getMessage()]) == 1
    finally:
        await asyncio.to_thread(redis_cluster.restore)


class _Node:
    def __init__(self, name: str) -> None:
        self.name = name


class _ReplacedCluster:
    """What a store meets on a master that was paused and replaced: the first write goes to
    it (its client's slot map predates the failover), ``WAIT`` finds no replica, and the
    other masters give the slot to ``successor``; the retry reaches the successor."""

    def __init__(self, successor: str) -> None:
        self.stale = _Node("127.0.0.1:7001")
        self.other = _Node("127.0.0.1:7002")
        self.successor = successor
        self.writes: list[str] = []
        self.asked: list[str] = []

    def get_node_from_key(self, key: str) -> _Node:
        return self.stale if not self.writes else _Node(self.successor)

    def keyslot(self, key: str) -> int:
        return 100

    def get_primaries(self) -> list[_Node]:
        return [self.stale, self.other]

    def pipeline(self, transaction: bool) -> _ReplacedCluster:
        return self

    def execute_command(self, *args: object, target_nodes: _Node | None = None) -> Any:
        if args[0] == "CLUSTER NODES":
            assert target_nodes is not None
            self.asked.append(target_nodes.name)

            async def view() -> dict[str, dict[str, Any]]:
                return {
                    self.stale.name: {"flags": "master", "slots": []},
                    self.successor: {"flags": "master", "slots": [["0", "5460"]]},
                    self.other.name: {"flags": "myself,master", "slots": [["5461", "10922"]]},
                }

            return view()
        return None

    async def execute(self) -> list[int]:
        target = self.get_node_from_key("")
        self.writes.append(target.name)
        # the replaced master has no replica; the successor has one
        return [0, 0 if target is self.stale else 1]


async def test_a_write_on_a_replaced_master_is_retried_on_its_successor(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = RedisClusterStateStore(
        [("127.0.0.1", 7001)], url="redis+cluster://127.0.0.1:7001/", backoff_s=0.01
    )
    real, fake = store._redis, _ReplacedCluster(successor="127.0.0.1:7004")
    store._redis = fake
    caplog.set_level(logging.WARNING, logger="execflow.backends.redis_cluster_state")
    try:
        await store.commit("live:6", [Write("account", "live:6", 0, {"b": 1})])
        # the replaced master's answer was not taken: the commit ran again on the successor
        assert fake.writes == ["127.0.0.1:7001", "127.0.0.1:7004"]
        assert fake.asked == ["127.0.0.1:7002"]
        assert any("no longer the master" in r.getMessage() for r in caplog.records)
        assert "127.0.0.1:7001" not in store._unreplicated_until
    finally:
        store._redis = real
        await store.close()


async def test_a_master_the_others_still_name_keeps_a_write_without_replica() -> None:
    store = RedisClusterStateStore(
        [("127.0.0.1", 7001)], url="redis+cluster://127.0.0.1:7001/", backoff_s=0.01
    )
    # the others give the slot to the node written: a promoted master with no replica yet
    real, fake = store._redis, _ReplacedCluster(successor="127.0.0.1:7001")
    store._redis = fake
    try:
        await store.commit("live:6", [Write("account", "live:6", 0, {"b": 1})])
        assert fake.writes == ["127.0.0.1:7001"]
        assert "127.0.0.1:7001" in store._unreplicated_until
    finally:
        store._redis = real
        await store.close()


def test_slot_owner_skips_failed_masters_and_replicas() -> None:
    view: dict[str, dict[str, Any]] = {
        "a:1": {"flags": "master,fail", "slots": [["0", "100"]]},
        "b:2": {"flags": "slave", "slots": []},
        "c:3": {"flags": "myself,master", "slots": [["0", "100"], ["200"]]},
    }
    assert slot_owner(view, 50) == "c:3"
    assert slot_owner(view, 200) == "c:3"
    assert slot_owner(view, 150) is None
