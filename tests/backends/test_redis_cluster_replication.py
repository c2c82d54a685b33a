"""Redis Cluster store: the replication check after every write, on a stand-in client.

The moments it guards (a paused master that wakes up replaced, a promoted master with no
replica yet) are too short or too rare to provoke on the test cluster on purpose, so a
stand-in for redis-py's ``RedisCluster`` plays them: which node the client's slot map
names, what each node's ``ROLE`` answers, whom the other masters give the slot to, and
how many replicas acknowledge a ``WAIT``.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from execflow.backends.redis_cluster_state import (
    RedisClusterStateStore,
    replicas_in_role,
    slot_owner,
)
from execflow.backends.state import Write
from execflow.errors import StoreError
from execflow.logs import setup_logging
from execflow.metrics import Metrics
from execflow.pipeline.services import open_services
from execflow.settings import Settings

OLD = "127.0.0.1:7001"
OTHER = "127.0.0.1:7002"
NEW = "127.0.0.1:7004"
LOGGER = "execflow.backends.redis_cluster_state"


class _Node:
    def __init__(self, name: str) -> None:
        self.name = name


def _master_role(replicas: int) -> list[Any]:
    return [b"master", 10, [[b"127.0.0.1", str(7100 + n).encode(), b"10"] for n in range(replicas)]]


class _StandIn:
    """What the store sees of a cluster whose slot 100 ``mapped`` serves by the client's map.

    ``owner`` is whom the other masters give the slot to; a write to another node is
    followed by a new map naming ``owner`` (the old master answers ``MOVED`` from then
    on). ``roles`` is each node's ``ROLE`` reply, ``acks`` how many replicas acknowledge
    a ``WAIT`` on it. ``calls`` keeps every command as ``(command, node, argument)``.
    """

    def __init__(self, mapped: str = OLD) -> None:
        self.mapped = mapped
        self.owner = mapped
        self.roles: dict[str, list[Any]] = {}
        self.acks: dict[str, int] = {}
        self.calls: list[tuple[str, str, int | None]] = []
        # what each node holds, key -> value (a hash as a dict), for the reads
        self.data: dict[str, dict[str, Any]] = {}

    async def ping(self) -> bool:
        return True

    def read(self, command: str, key: str) -> Any:
        """What the node the map names holds at ``key``; a node that no longer serves the
        slot answers from its old data once, then ``MOVED`` (the map names ``owner``)."""
        node = self.mapped
        self.calls.append((command, node, None))
        self.mapped = self.owner
        return self.data.get(node, {}).get(key)

    async def get(self, key: str) -> Any:
        return self.read("GET", key)

    async def hmget(self, key: str, fields: list[str]) -> list[Any]:
        found = self.read("HMGET", key) or {}
        return [found.get(field) for field in fields]

    async def aclose(self) -> None:
        pass

    def get_node_from_key(self, key: str) -> _Node:
        return _Node(self.mapped)

    def keyslot(self, key: str) -> int:
        return 100

    def get_primaries(self) -> list[_Node]:
        return [_Node(OLD), _Node(OTHER)]

    def pipeline(self, transaction: bool) -> _Pipeline:
        return _Pipeline(self)

    def execute_command(self, *args: Any, target_nodes: _Node | None = None) -> Any:
        if target_nodes is None:  # a write alone, no WAIT after it
            target_nodes = _Node(self.mapped)
            args = ("write",)
        self.calls.append((str(args[0]), target_nodes.name, None))
        return self._answer(str(args[0]), target_nodes.name)

    async def _answer(self, command: str, node: str) -> Any:
        if command == "write":
            return 0
        if command == "ROLE":
            return self.roles[node]
        assert command == "CLUSTER NODES"
        return {
            name: {"flags": "master", "slots": []} for name in (OLD, NEW) if name != self.owner
        } | {
            self.owner: {"flags": "master", "slots": [["0", "5460"]]},
            OTHER: {"flags": "myself,master", "slots": [["5461", "10922"]]},
        }

    def asked(self, command: str) -> list[str]:
        return [node for name, node, _ in self.calls if name == command]

    def waits(self) -> list[tuple[str, int | None]]:
        return [(node, n) for name, node, n in self.calls if name == "WAIT"]


class _Pipeline:
    """A write and its ``WAIT``, sent together to the node the slot map names."""

    def __init__(self, cluster: _StandIn) -> None:
        self._cluster = cluster
        self._queued: list[tuple[Any, ...]] = []

    def execute_command(self, *args: Any, target_nodes: _Node | None = None) -> None:
        self._queued.append(args)

    def hmget(self, key: str, fields: list[str]) -> None:
        self._queued.append(("HMGET", key, fields))

    def hgetall(self, key: str) -> None:
        self._queued.append(("HGETALL", key))

    def get(self, key: str) -> None:
        self._queued.append(("GET", key))

    async def execute(self) -> list[Any]:
        cluster = self._cluster
        if self._queued[0][0] == "HMGET":  # a transition's reads, all from the mapped node
            node = cluster.mapped
            order_key, fields = self._queued[0][1:]
            found = await cluster.hmget(order_key, fields)
            held = cluster.data.get(node, {})
            return [found] + [_answer(held, query) for query in self._queued[1:]]
        (_, wait) = self._queued
        node, replicas = cluster.mapped, int(wait[1])
        cluster.calls += [("write", node, None), ("WAIT", node, replicas)]
        if node != cluster.owner:
            cluster.mapped = cluster.owner
        return [0, cluster.acks.get(node, 0) if replicas > 0 else 0]


def _answer(held: dict[str, Any], query: tuple[Any, ...]) -> Any:
    """A queued read's reply from one node's keys (``GET``: the instruments token, kept
    as text when the test stored one)."""
    value = held.get(query[1])
    if query[0] == "HMGET":
        return [(value or {}).get(field) for field in query[2]]
    if query[0] == "GET":
        return value if isinstance(value, str | bytes) else None
    return value or {}


@pytest.fixture
async def standin_store() -> AsyncIterator[RedisClusterStateStore]:
    made = RedisClusterStateStore(
        [("127.0.0.1", 7001)], url=f"redis+cluster://{OLD}/", backoff_s=0.01
    )
    real = made._redis
    try:
        yield made
    finally:
        made._redis = real
        await made.close()


def _messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def _installed(
    store: RedisClusterStateStore,
    caplog: pytest.LogCaptureFixture,
    roles: dict[str, list[Any]],
    acks: dict[str, int] | None = None,
) -> _StandIn:
    """A stand-in cluster as ``store``'s client, with these ``ROLE`` replies and acks."""
    cluster = store._redis = _StandIn()
    cluster.roles, cluster.acks = roles, acks or {}
    caplog.set_level(logging.WARNING, logger=LOGGER)
    return cluster


async def _commit(store: RedisClusterStateStore, version: int) -> None:
    await store.commit("live:6", [Write("account", "live:6", version, {"b": version})])


async def test_a_write_on_a_replaced_master_is_retried_on_its_successor(
    standin_store: RedisClusterStateStore, caplog: pytest.LogCaptureFixture
) -> None:
    # paused, replaced, awake: it still says master (its replica left) and takes the write
    roles = {OLD: _master_role(0), NEW: _master_role(1)}
    cluster = _installed(standin_store, caplog, roles, {NEW: 1})
    cluster.owner = NEW
    await _commit(standin_store, 0)
    # the replaced master's answer was not taken: the commit ran again on the successor
    assert cluster.asked("write") == [OLD, NEW]
    assert cluster.asked("ROLE") == [OLD] and cluster.asked("CLUSTER NODES") == [OTHER]
    assert _messages(caplog, "no longer the master")
    assert standin_store.under_replicated_writes == 0


async def test_a_write_on_a_node_that_says_it_is_a_replica_is_retried(
    standin_store: RedisClusterStateStore, caplog: pytest.LogCaptureFixture
) -> None:
    # demoted after it took the write; the other masters' view has not caught up yet
    roles = {OLD: [b"slave", b"127.0.0.1", 7004, b"connected", 10]}
    cluster = _installed(standin_store, caplog, roles, {NEW: 1})
    cluster.owner = NEW  # the retry's new map (the node answers MOVED now)
    await _commit(standin_store, 0)
    assert cluster.asked("write") == [OLD, NEW]
    # its own ROLE decided: the other masters were not asked
    assert cluster.asked("ROLE") == [OLD] and cluster.asked("CLUSTER NODES") == []
    assert _messages(caplog, "it is a replica now")


async def test_a_master_without_replica_is_checked_on_every_write(
    standin_store: RedisClusterStateStore, caplog: pytest.LogCaptureFixture
) -> None:
    # a promoted master before its old master rejoined: no replica, the others name it
    cluster = _installed(standin_store, caplog, {OLD: _master_role(0)})
    for version in range(3):
        await _commit(standin_store, version)
    # the first write waited for the one replica wanted, the next for the none it has...
    assert cluster.waits() == [(OLD, 1), (OLD, 0), (OLD, 0)]
    # ...and every one of them asked again whether the node still serves the slot
    assert cluster.asked("ROLE") == [OLD] * 3
    assert cluster.asked("CLUSTER NODES") == [OTHER] * 3
    assert standin_store.under_replicated_writes == 3
    changed = _messages(caplog, "replicas of a master changed")
    assert len(changed) == 1 and f"node={OLD} replicas=0 was=unknown" in changed[0]
    # then it is replaced while paused: the write it takes is not an answer
    cluster.owner = NEW
    cluster.roles[NEW] = _master_role(1)
    cluster.acks[NEW] = 1
    await _commit(standin_store, 3)
    assert cluster.asked("write")[-2:] == [OLD, NEW]
    assert cluster.waits()[-1] == (NEW, 1)
    assert standin_store.under_replicated_writes == 3


async def test_a_replica_that_rejoins_is_waited_for_again(
    standin_store: RedisClusterStateStore, caplog: pytest.LogCaptureFixture
) -> None:
    cluster = _installed(standin_store, caplog, {OLD: _master_role(0)})
    await _commit(standin_store, 0)
    await _commit(standin_store, 1)
    # the old master is back as its replica: learnt on the next write, waited for after
    cluster.roles[OLD] = _master_role(1)
    cluster.acks[OLD] = 1
    await _commit(standin_store, 2)
    await _commit(standin_store, 3)
    assert [n for _, n in cluster.waits()] == [1, 0, 0, 1]
    assert cluster.asked("ROLE") == [OLD] * 3  # not after the write its replica took
    changed = _messages(caplog, "replicas of a master changed")
    assert len(changed) == 2 and "replicas=1 was=0" in changed[1]


async def test_a_lagging_replica_is_still_waited_for_and_warned_about_once(
    standin_store: RedisClusterStateStore, caplog: pytest.LogCaptureFixture
) -> None:
    cluster = _installed(standin_store, caplog, {OLD: _master_role(1)}, {OLD: 1})
    await _commit(standin_store, 0)  # acknowledged: nothing learnt, nothing asked
    assert cluster.asked("ROLE") == []
    cluster.acks[OLD] = 0  # connected, but it does not acknowledge in time
    for version in range(1, 4):
        await _commit(standin_store, version)
    assert [n for _, n in cluster.waits()] == [1, 1, 1, 1]
    assert standin_store.under_replicated_writes == 3
    assert len(_messages(caplog, "replicas of a master changed")) == 1  # learnt: 1
    assert len(_messages(caplog, "lagging replica")) == 1
    cluster.acks[OLD] = 1
    await _commit(standin_store, 4)
    cluster.acks[OLD] = 0
    await _commit(standin_store, 5)
    assert len(_messages(caplog, "lagging replica")) == 2  # a new episode


LIFECYCLE = {"lifecycle_id": "L1", "account_id": "live:6", "order_id": "O1"}


async def test_an_absent_record_on_a_replaced_master_is_read_again_on_its_successor(
    standin_store: RedisClusterStateStore, caplog: pytest.LogCaptureFixture
) -> None:
    # paused, replaced, awake: it answers from its old data, where the record written on
    # its successor meanwhile is absent (the dispatcher would dead-letter the report)
    cluster = _installed(standin_store, caplog, {OLD: _master_role(0), NEW: _master_role(1)})
    cluster.owner = NEW
    key = standin_store.lifecycle_key("L1")
    cluster.data[NEW] = {key: orjson.dumps(LIFECYCLE)}
    assert await standin_store.get_lifecycle("L1") == LIFECYCLE
    assert cluster.asked("GET") == [OLD, NEW]
    assert cluster.asked("ROLE") == [OLD] and cluster.asked("CLUSTER NODES") == [OTHER]
    assert _messages(caplog, "read on a master no longer the master of its slot")


async def test_an_absent_order_on_a_replaced_master_is_read_again_on_its_successor(
    standin_store: RedisClusterStateStore, caplog: pytest.LogCaptureFixture
) -> None:
    cluster = _installed(standin_store, caplog, {OLD: _master_role(0), NEW: _master_role(1)})
    cluster.owner = NEW
    order = {"v": b"3", "d": b'{"order_id":"O1"}'}
    cluster.data[NEW] = {standin_store.order_key("live:6", "O1"): order}
    reads = await standin_store.read_for_transition("live:6", "O1")
    assert reads.order is not None and reads.order.version == 3
    assert cluster.asked("HMGET") == [OLD, NEW]
    assert cluster.asked("ROLE") == [OLD]
    # the same for a single order read
    cluster.mapped = OLD
    found = await standin_store.get_order("live:6", "O1")
    assert found is not None and found.version == 3
    assert cluster.asked("HMGET")[-2:] == [OLD, NEW]


async def test_absent_on_the_serving_master_is_absent_and_found_is_not_checked(
    standin_store: RedisClusterStateStore, caplog: pytest.LogCaptureFixture
) -> None:
    cluster = _installed(standin_store, caplog, {OLD: _master_role(1)})
    assert await standin_store.get_lifecycle("L1") is None
    assert (await standin_store.read_for_transition("live:6", "O1")).order is None
    # asked once per miss whether the node still serves the slot; it does
    assert cluster.asked("GET") == [OLD] and cluster.asked("HMGET") == [OLD]
    assert cluster.asked("ROLE") == [OLD, OLD]
    assert cluster.asked("CLUSTER NODES") == [OTHER, OTHER]
    assert not _messages(caplog, "no longer the master")
    # a record found is taken as it is: no question asked
    cluster.data[OLD] = {standin_store.lifecycle_key("L1"): orjson.dumps(LIFECYCLE)}
    assert await standin_store.get_lifecycle("L1") == LIFECYCLE
    assert cluster.asked("ROLE") == [OLD, OLD]


async def test_reads_are_confirmed_current_only_on_a_master_that_serves_the_slot(
    standin_store: RedisClusterStateStore, caplog: pytest.LogCaptureFixture
) -> None:
    cluster = _installed(standin_store, caplog, {OLD: _master_role(0), NEW: _master_role(1)})
    await standin_store.confirm_current("live:6", "O1")  # OLD serves it: nothing raised
    cluster.owner = NEW  # replaced while paused, not heard so yet: the map still names OLD
    with pytest.raises(StoreError, match="replaced meanwhile"):
        await standin_store.confirm_current("live:6", "O1")
    # asked once each, no retry of its own: the caller reads again
    assert cluster.asked("ROLE") == [OLD, OLD]
    assert cluster.asked("CLUSTER NODES") == [OTHER, OTHER]


def _replication(metrics: Metrics) -> dict[str, float]:
    """The store's two series in ``metrics``'s exposition, by name (the gauge's by node)."""
    found = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            if sample.name.startswith("execflow_state_") and not sample.name.endswith("_created"):
                found[sample.name + str(sample.labels.get("node", ""))] = sample.value
    return found


async def test_the_stores_replication_is_in_the_process_metrics(
    standin_store: RedisClusterStateStore, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    cluster = _installed(standin_store, caplog, {OLD: _master_role(0)})
    settings = Settings(
        log_dir=tmp_path / "logs", database_url=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    )
    logs = setup_logging(settings, "worker_open", bridge=False)
    metrics = Metrics("worker_open")
    before = gc.get_threshold()
    try:
        async with open_services(settings, logs, metrics=metrics, state=standin_store):
            assert _replication(metrics) == {"execflow_state_under_replicated_writes_total": 0}
            # a promoted master without replica: every write counted
            for version in range(2):
                await _commit(standin_store, version)
            assert _replication(metrics) == {
                "execflow_state_under_replicated_writes_total": 2,
                f"execflow_state_master_replicas{OLD}": 0,
            }
            # its old master is back as its replica: learnt on the next write (counted,
            # its WAIT asked for none), waited for on the one after
            cluster.roles[OLD] = _master_role(1)
            cluster.acks[OLD] = 1
            await _commit(standin_store, 2)
            await _commit(standin_store, 3)
            assert standin_store.under_replicated_writes == 3
            assert _replication(metrics) == {
                "execflow_state_under_replicated_writes_total": 3,
                f"execflow_state_master_replicas{OLD}": 1,
            }
    finally:
        gc.set_threshold(*before)
        logs.close()


def test_replicas_in_role_counts_a_masters_replicas_only() -> None:
    assert replicas_in_role(_master_role(2)) == 2
    assert replicas_in_role(["master", 0, []]) == 0
    assert replicas_in_role([b"slave", b"127.0.0.1", 7001, b"connected", 5]) is None


def test_slot_owner_skips_failed_masters_and_replicas() -> None:
    view: dict[str, dict[str, Any]] = {
        "a:1": {"flags": "master,fail", "slots": [["0", "100"]]},
        "b:2": {"flags": "slave", "slots": []},
        "c:3": {"flags": "myself,master", "slots": [["0", "100"], ["200"]]},
    }
    assert slot_owner(view, 50) == "c:3"
    assert slot_owner(view, 200) == "c:3"
    assert slot_owner(view, 150) is None
