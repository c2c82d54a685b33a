"""Fixtures: each port parametrised over its in-memory and its real implementation.

Real servers are shared with other engineers running tests at the same time, so every
fixture isolates itself: unique queue names, a unique Redis key prefix, a fresh
PostgreSQL database, all removed at the end.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest

from execflow.backends.bus import QueueNames
from execflow.backends.memory_bus import InMemoryBus
from execflow.backends.memory_state import InMemoryStateStore
from execflow.backends.rabbitmq import RabbitMQBus
from execflow.backends.rabbitmq_failover import connect_failover
from execflow.backends.redis_cluster_url import make_cluster_store
from execflow.backends.redis_state import RedisStateStore
from execflow.backends.sql import SqlDatabase
from execflow.settings import Settings
from tests.clusters import RedisClusterServers
from tests.services import AMQP_URL, POSTGRES_URL, REDIS_URL, need_service


def unique(prefix: str = "t") -> str:
    """A short random name, safe for queue names, key prefixes and database names."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


async def make_rabbit_bus(names: QueueNames, **kwargs: object) -> RabbitMQBus:
    """A connected RabbitMQ bus with a unique connection name."""
    bus = RabbitMQBus(
        AMQP_URL,
        names,
        connection_name=f"execflow-test-{unique()}",
        crash_requeue_delay_s=0.05,
        **kwargs,  # type: ignore[arg-type]
    )
    await bus.connect()
    return bus


async def delete_queues(names: set[str], amqp_url: str = AMQP_URL) -> None:
    """Remove the queues a test declared (the broker is shared)."""
    if not names:
        return
    connection = await connect_failover(amqp_url)  # a cluster's URL lists its nodes
    try:
        for name in names:
            channel = await connection.channel()
            await channel.queue_delete(name)
            await channel.close()
    finally:
        await connection.close()


async def close_connection_by_name(connection_name: str) -> int:
    """Close (server side) only the connections carrying ``connection_name``.

    ``close_all_connections`` would also cut other engineers' test connections.
    """
    listing = await asyncio.to_thread(
        subprocess.run,
        ["rabbitmqctl", "-q", "--no-table-headers", "list_connections", "pid", "client_properties"],
        capture_output=True,
        text=True,
        check=True,
    )
    closed = 0
    marker = f'{{"connection_name","{connection_name}"}}'
    for line in listing.stdout.splitlines():
        pid, _, properties = line.partition("\t")
        if marker in properties:
            await asyncio.to_thread(
                subprocess.run,
                ["rabbitmqctl", "-q", "close_connection", pid.strip(), "execflow test"],
                capture_output=True,
                check=True,
            )
            closed += 1
    return closed


@pytest.fixture(
    params=[
        "memory",
        pytest.param("quorum", marks=pytest.mark.integration),
        pytest.param("classic", marks=pytest.mark.integration),
    ],
)
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[InMemoryBus | RabbitMQBus]:
    """A connected bus with a unique queue prefix: in memory, or RabbitMQ with quorum
    queues (the default) or classic ones."""
    names = QueueNames(unique("eftest."))
    if request.param == "memory":
        memory = InMemoryBus(names, prefetch=16, crash_requeue_delay_s=0.01)
        await memory.connect()
        yield memory
        await memory.close()
        return
    need_service("rabbitmq")
    rabbit = await make_rabbit_bus(names, prefetch=16, queue_type=request.param)
    try:
        yield rabbit
    finally:
        declared = set(rabbit.declared_queues)
        await rabbit.close()
        await delete_queues(declared)


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.integration),
        pytest.param("redis_cluster", marks=pytest.mark.integration),
    ],
)
async def store(
    request: pytest.FixtureRequest,
) -> AsyncIterator[InMemoryStateStore | RedisStateStore]:
    """A connected state store under a unique key prefix (one server, or the test cluster)."""
    if request.param == "memory":
        yield InMemoryStateStore()
        return
    redis_store: RedisStateStore
    if request.param == "redis_cluster":
        cluster: RedisClusterServers = request.getfixturevalue("redis_cluster")
        redis_store = make_cluster_store(
            Settings(state_url=f"{cluster.url}/?key_prefix={unique('eft')}", redis_pool_size=64)
        )
    else:
        need_service("redis")
        redis_store = RedisStateStore(
            REDIS_URL, pool_size=64, timeout_s=5.0, key_prefix=unique("eft")
        )
    await redis_store.connect()
    try:
        yield redis_store
    finally:
        await redis_store.flush_all()
        await redis_store.close()


@asynccontextmanager
async def fresh_pg_database(server_url: str | None = None) -> AsyncIterator[str]:
    """A fresh PostgreSQL database (URL for SQLAlchemy), dropped at the end.

    On the default server, or on the one ``server_url`` (any database of it) names.
    """
    if server_url is None:
        need_service("postgresql")
        server_url = POSTGRES_URL
    admin_dsn = server_url.replace("postgresql+asyncpg://", "postgresql://")
    name = unique("execflow_t_")
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = server_url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)],
)
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database URL: a SQLite file in tmp_path, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'execflow.db'}"
        return
    async with fresh_pg_database() as url:
        yield url


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[SqlDatabase]:
    """A connected, migrated database."""
    database = SqlDatabase(db_url, batch_size=7)
    await database.connect()
    try:
        yield database
    finally:
        await database.close()
