"""``RedisClusterServers.start(masters=2)``: fewer than 3 masters, joined by hand.

``redis-cli --cluster create`` refuses fewer than 3 masters, so ``tests/clusters.py``
assigns the slots, meets the nodes and attaches the replicas itself; the cluster bench
measures 1, 2 and 3 masters on it. A store on the 2-master cluster commits on both
masters and each commit is on a replica when it returns.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis

from execflow.backends.factory import make_state_store
from execflow.backends.redis_cluster_state import RedisClusterStateStore
from execflow.backends.state import Write
from execflow.settings import Settings, require_services
from tests.backends.conftest import unique
from tests.clusters import RedisClusterServers
from tests.faults.services import ServerUnavailable

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def two_masters() -> Iterator[RedisClusterServers]:
    try:
        cluster = RedisClusterServers.start(masters=2, replicas=1)
    except (ServerUnavailable, OSError, TimeoutError) as error:
        if require_services():
            pytest.fail(f"cannot start a throwaway Redis Cluster: {error}")
        pytest.skip(f"cannot start a throwaway Redis Cluster: {error}")
    try:
        yield cluster
    finally:
        cluster.close()


def test_two_masters_share_every_slot_and_each_has_a_replica(
    two_masters: RedisClusterServers,
) -> None:
    masters = two_masters.masters()
    assert len(two_masters.nodes) == 4
    assert len(masters) == 2
    info = two_masters.info(two_masters.nodes[0], "CLUSTER", "INFO")
    assert info["cluster_state"] == "ok"
    assert info["cluster_slots_assigned"] == "16384"
    assert info["cluster_size"] == "2"
    for master in masters:
        assert two_masters.info(master, "INFO", "replication")["connected_slaves"] == "1"


async def test_a_store_commits_on_both_masters_with_a_replica_each(
    two_masters: RedisClusterServers,
) -> None:
    settings = Settings(state_url=f"{two_masters.url}?key_prefix={unique('shape')}")
    store = make_state_store(settings)
    assert isinstance(store, RedisClusterStateStore)
    await store.connect()
    try:
        nodes = set()
        for n in range(12):
            account = f"live:{n}"
            await store.commit(account, [Write("account", account, 0, {"v": n})])
            node = store._redis.get_node_from_key(store.account_key(account))
            nodes.add(f"{node.host}:{node.port}")
        assert nodes == {m.address for m in two_masters.masters()}
        for replica in (n for n in two_masters.nodes if two_masters.role(n) == "slave"):
            client = aioredis.Redis(host="127.0.0.1", port=replica.port)
            try:
                # DBSIZE names no key: a replica answers it (no MOVED to its master)
                assert int(await client.dbsize()) > 0
            finally:
                await client.aclose()
    finally:
        await store.flush_all()
        await store.close()
