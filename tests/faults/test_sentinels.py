"""The developer's own servers keep their sentinels through the fault suite (issue 11).

``conftest.default_sentinels`` planted, before the first fault test, a queue holding a
message, a key and a table holding a row on the default-port RabbitMQ, Redis and
PostgreSQL. This test runs after every other one (``pytest_collection_modifyitems``) and
finds each sentinel as planted and no default server restarted. Run alone, or after a
selection that left some fault out, it first does itself, to the throwaway servers, each
disruption the suite does: Redis restarted empty and frozen, RabbitMQ's application
stopped, its VM killed and frozen, PostgreSQL stopped.
"""

from __future__ import annotations

import asyncio

import pytest
import redis

from tests.faults.sentinels import Sentinels, check
from tests.faults.services import FaultServers
from tests.services import need_service

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.slow]

DISRUPTIONS = frozenset({
    "redis_restart_empty", "redis_freeze",
    "rabbit_stop_app", "rabbit_hard_kill", "rabbit_freeze",
    "postgres_stop",
})  # fmt: skip


def disrupt(servers: FaultServers, kinds: set[str]) -> None:
    """Do each of ``kinds`` to the throwaway servers, then bring them back."""
    if "redis_restart_empty" in kinds:
        client = redis.Redis.from_url(servers.redis_url)
        try:
            client.set("before-restart", b"1")
            servers.redis.restart_empty(0.2)
            assert client.get("before-restart") is None  # the throwaway one was emptied
        finally:
            client.close()
    if "redis_freeze" in kinds:
        servers.redis.freeze()
        servers.redis.resume()
    if "rabbit_stop_app" in kinds:
        servers.rabbit.stop_app()
        servers.rabbit.start_app()
    if "rabbit_hard_kill" in kinds:
        servers.rabbit.hard_kill()
        servers.rabbit.start()
    if "rabbit_freeze" in kinds:
        servers.rabbit.freeze()
        servers.rabbit.resume()
    if "postgres_stop" in kinds:
        servers.postgres.fault_stop()
        servers.postgres.start()
    servers.ensure()


async def test_default_servers_keep_their_sentinels(
    default_sentinels: Sentinels, fault_servers: FaultServers
) -> None:
    for name in ("rabbitmq", "redis", "postgresql"):
        need_service(name)
    planted = default_sentinels
    assert planted.queue and planted.redis_run_id and planted.pg_started, (
        "a default server did not answer when the sentinels were planted"
    )
    missing = set(DISRUPTIONS - set(+fault_servers.disruptions))
    await asyncio.to_thread(disrupt, fault_servers, missing)
    assert set(+fault_servers.disruptions) >= DISRUPTIONS, fault_servers.disruptions
    assert await check(planted) == []
