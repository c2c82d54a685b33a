"""Sentinels on the default-port servers: proof that the fault suite leaves them alone.

Before the first fault test, a session fixture plants on each default server that answers
(5672, 6379, 5432, the developer's own): a RabbitMQ queue holding one message (not
durable, so a restart of the node or of its application loses it), a Redis key (and the
server's ``run_id``, new at every start), a PostgreSQL table with a row (and
``pg_postmaster_start_time()``). After the last fault test, ``test_sentinels.py`` checks
each is as planted. They are removed at the end of the session.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime

import aio_pika
import asyncpg  # type: ignore[import-untyped]
import redis.asyncio as aioredis

from tests.services import AMQP_URL, POSTGRES_URL, REDIS_URL

__all__ = ["BODY", "Sentinels", "check", "plant", "remove"]

BODY = b"execflow fault-suite sentinel: this server must keep me"
_PG_DSN = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")


@dataclass(slots=True)
class Sentinels:
    """What was planted where (a server that did not answer has none)."""

    name: str = field(default_factory=lambda: f"execflow_sentinel_{uuid.uuid4().hex[:10]}")
    queue: bool = False
    redis_run_id: str | None = None
    pg_started: datetime | None = None


async def plant(servers: set[str]) -> Sentinels:
    """Plant a sentinel in each of ``servers`` (``rabbitmq``, ``redis``, ``postgresql``)."""
    planted = Sentinels()
    if "rabbitmq" in servers:
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            await channel.declare_queue(planted.name, durable=False, auto_delete=False)
            await channel.default_exchange.publish(aio_pika.Message(BODY), routing_key=planted.name)
        planted.queue = True
    if "redis" in servers:
        client = aioredis.from_url(REDIS_URL)
        try:
            await client.set(planted.name, BODY)
            planted.redis_run_id = str((await client.info("server"))["run_id"])
        finally:
            await client.aclose()
    if "postgresql" in servers:
        connection = await asyncpg.connect(_PG_DSN)
        try:
            await connection.execute(f'CREATE TABLE "{planted.name}" (note bytea)')
            await connection.execute(f'INSERT INTO "{planted.name}" VALUES ($1)', BODY)
            planted.pg_started = await connection.fetchval("SELECT pg_postmaster_start_time()")
        finally:
            await connection.close()
    return planted


async def check(planted: Sentinels) -> list[str]:
    """What is not as planted (empty: every sentinel intact, no server restarted)."""
    problems: list[str] = []
    if planted.queue:
        problems += await _check_queue(planted.name)
    if planted.redis_run_id is not None:
        client = aioredis.from_url(REDIS_URL)
        try:
            if await client.get(planted.name) != BODY:
                problems.append(f"redis: key {planted.name} is gone or changed")
            run_id = str((await client.info("server"))["run_id"])
            if run_id != planted.redis_run_id:
                problems.append(f"redis: restarted (run_id {planted.redis_run_id} -> {run_id})")
        finally:
            await client.aclose()
    if planted.pg_started is not None:
        connection = await asyncpg.connect(_PG_DSN)
        try:
            started = await connection.fetchval("SELECT pg_postmaster_start_time()")
            if started != planted.pg_started:
                problems.append(f"postgresql: restarted ({planted.pg_started} -> {started})")
            try:
                rows = await connection.fetch(f'SELECT note FROM "{planted.name}"')
            except asyncpg.UndefinedTableError:
                rows = None
            if rows is None or [r["note"] for r in rows] != [BODY]:
                problems.append(f"postgresql: table {planted.name} is gone or changed")
        finally:
            await connection.close()
    return problems


async def _check_queue(name: str) -> list[str]:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        try:
            queue = await channel.declare_queue(name, passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return [f"rabbitmq: queue {name} is gone (the node or its application restarted)"]
        count = queue.declaration_result.message_count
        if count != 1:
            return [f"rabbitmq: queue {name} holds {count} messages, not 1"]
    return []


async def remove(planted: Sentinels) -> None:
    """Remove whatever is left of the sentinels (best effort: a server may be down)."""
    if planted.queue:
        with contextlib.suppress(Exception):
            connection = await aio_pika.connect(AMQP_URL)
            async with connection:
                channel = await connection.channel()
                await channel.queue_delete(planted.name)
    if planted.redis_run_id is not None:
        with contextlib.suppress(Exception):
            client = aioredis.from_url(REDIS_URL)
            try:
                await client.delete(planted.name)
            finally:
                await client.aclose()
    if planted.pg_started is not None:
        with contextlib.suppress(Exception):
            connection = await asyncpg.connect(_PG_DSN)
            try:
                await connection.execute(f'DROP TABLE IF EXISTS "{planted.name}"')
            finally:
                await connection.close()
