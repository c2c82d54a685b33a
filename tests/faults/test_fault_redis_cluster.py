"""Fault: ``kill -9`` a Redis Cluster master under load (issue 17, point 4).

On the throwaway 3-master, 3-replica Redis Cluster (``tests/clusters.py``,
``cluster-node-timeout`` 2000 ms), never on the default-port servers. Mid-stream one master
is killed; its replica is promoted within a few seconds. Meanwhile every state call on the
master's slots is retried (``RedisClusterStateStore``; after its window a ``StoreError``
the caller retries), and the commits the master acknowledged were already on the replica
(``WAIT``). The killed node is restarted afterwards (it rejoins as a replica).
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from execflow.backends.redis_cluster_url import make_cluster_store
from execflow.backends.state import Write
from execflow.errors import StoreError, VersionConflict
from execflow.settings import Settings
from tests.backends.conftest import unique
from tests.clusters import RedisClusterServers
from tests.faults.stress import deadline_s

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.slow]


async def test_kill_9_a_master_under_commits_loses_no_commit(
    redis_cluster: RedisClusterServers, caplog: pytest.LogCaptureFixture
) -> None:
    """The store alone: 24 writers commit a counter each, a master dies, none is lost.

    Every commit that returned is on the promoted replica (``WAIT``); a commit whose
    reply was lost is retried and answers ``VersionConflict`` when it had been applied,
    so the writer reloads (as a worker does) and never counts it twice.
    """
    caplog.set_level(logging.WARNING, logger="execflow.backends.redis_cluster_state")
    await asyncio.to_thread(redis_cluster.restore)
    store = make_cluster_store(
        Settings(state_url=f"{redis_cluster.url}/?key_prefix={unique('efc')}", redis_timeout_s=1.0)
    )
    await store.connect()
    accounts = [f"live:{n}" for n in range(24)]
    done: dict[str, int] = dict.fromkeys(accounts, 0)
    stop = asyncio.Event()

    async def writer(account: str) -> None:
        while not stop.is_set():
            try:
                current = await store.get_account(account)
                version = 0 if current is None else current.version
                counter = 0 if current is None else int(current.data["n"])
                await store.commit(
                    account, [Write("account", account, version, {"n": counter + 1})]
                )
            except VersionConflict:
                continue  # applied before its reply was lost: the reload shows it
            except StoreError:
                await asyncio.sleep(0.1)  # the runner retries later, as here
                continue
            done[account] = counter + 1

    try:
        tasks = [asyncio.create_task(writer(a)) for a in accounts]
        await asyncio.sleep(2.0)
        before = sum(done.values())
        await asyncio.to_thread(redis_cluster.kill, redis_cluster.masters()[0])
        failover_s = await asyncio.to_thread(redis_cluster.wait_healthy, deadline_s(60))
        await asyncio.sleep(2.0)
        stop.set()
        await asyncio.gather(*tasks)
        after = sum(done.values())
        assert after > before, "no commit after the failover"
        for account in accounts:
            stored = await store.get_account(account)
            assert stored is not None
            # applied once each (the counter is the version); every commit that returned is
            # there (one that failed with StoreError after it was applied may be too)
            assert stored.data["n"] == stored.version, account
            assert done[account] <= stored.version <= done[account] + 1, account
        assert failover_s < deadline_s(30)
        # the writers did meet the failover (and went through it by retrying)
        retried = [r for r in caplog.records if r.getMessage().startswith("redis cluster call")]
        assert retried
    finally:
        stop.set()
        await store.flush_all()
        await store.close()
        await asyncio.to_thread(redis_cluster.restore)
