"""Raw limits of the backends, measured in one run, printed as a table.

    .venv/bin/python bench/backends_bench.py [--duration-s 2] [--memory-only]

Measures, for the in-memory and the real implementations: publish with confirms
(one by one and in batches of 100), consume with ack, a two-hop relay
(A -> consumer -> B -> consumer, every publish confirmed before its ack), state-store
compare-and-set transitions (read order + account, write both) sequentially and from
50 concurrent tasks, and database event inserts in batches of 100. Each measurement
is bounded by ``--duration-s``. Real servers are expected on 127.0.0.1 (the same
URLs as the tests); an absent server is reported, not fatal. Everything is created
under unique names and removed at the end: the servers are shared.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]

from execflow.apps.bench import delete_queues
from execflow.backends.bus import Bus, Delivery, OutgoingMessage, QueueNames
from execflow.backends.database import EventRecord
from execflow.backends.memory_bus import InMemoryBus
from execflow.backends.memory_state import InMemoryStateStore
from execflow.backends.rabbitmq import RabbitMQBus
from execflow.backends.redis_state import RedisStateStore
from execflow.backends.sql import SqlDatabase
from execflow.backends.state import StateStore, Write
from execflow.errors import VersionConflict

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
REDIS_URL = "redis://127.0.0.1:6379/15"
PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"
PG_BASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432"
BODY = b'{"exec_id":"x","ord_status":"EXECUTED","avg_px":"1.10005","cum_qty":"1.00"}'

Row = tuple[str, str, int, float]
rows: list[Row] = []


def record(backend: str, what: str, ops: int, seconds: float) -> None:
    rows.append((backend, what, ops, seconds))
    rate = ops / seconds if seconds > 0 else 0.0
    print(f"  {backend:<10} {what:<40} {rate:>12,.0f}/s", flush=True)


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


async def for_duration(duration_s: float, step: Callable[[], Awaitable[int]]) -> tuple[int, float]:
    """Run ``step`` (returning the ops it did) until ``duration_s`` has passed."""
    ops = 0
    start = time.perf_counter()
    deadline = start + duration_s
    while time.perf_counter() < deadline:
        ops += await step()
    return ops, time.perf_counter() - start


# -- bus ------------------------------------------------------------------------------------


async def bench_bus(name: str, bus: Bus, duration_s: float) -> None:
    q = bus.queues

    async def publish_one() -> int:
        await bus.publish(q.name("pub1"), BODY, {"trace_id": "t"})
        return 1

    ops, secs = await for_duration(duration_s, publish_one)
    record(name, "publish, confirmed one by one", ops, secs)

    batch = [OutgoingMessage(BODY, {"trace_id": "t"}) for _ in range(100)]

    async def publish_batch() -> int:
        await bus.publish_batch(q.name("pub100"), batch)
        return 100

    ops, secs = await for_duration(duration_s, publish_batch)
    record(name, "publish, batches of 100 confirmed", ops, secs)

    # Consume with ack: drain what the batch publish left behind, bounded by duration.
    total = min(await bus.queue_depth(q.name("pub100")), 200_000)
    consumed = 0
    done = asyncio.Event()

    async def ack(delivery: Delivery) -> None:
        nonlocal consumed
        await delivery.ack()
        consumed += 1
        if consumed >= total:
            done.set()

    start = time.perf_counter()
    consumer = await bus.consume(q.name("pub100"), ack, prefetch=256)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), duration_s)
    secs = time.perf_counter() - start
    await consumer.stop(drain_timeout_s=5)
    record(name, "consume with ack (prefetch 256)", consumed, secs)

    # Two hops: A -> relay (publish to B, confirmed, then ack A) -> B -> ack.
    hops = 0
    a, b = q.name("hop_a"), q.name("hop_b")
    await bus.declare(a)
    await bus.declare(b)

    async def relay(delivery: Delivery) -> None:
        await bus.publish(b, delivery.message.body, delivery.message.headers)
        await delivery.ack()

    published = 0
    room = asyncio.Event()

    async def sink(delivery: Delivery) -> None:
        nonlocal hops
        await delivery.ack()
        hops += 1
        if published - hops <= 500:
            room.set()

    relay_consumer = await bus.consume(a, relay, prefetch=64)
    sink_consumer = await bus.consume(b, sink, prefetch=64)
    start = time.perf_counter()
    deadline = start + duration_s
    while time.perf_counter() < deadline:
        await bus.publish_batch(a, batch)
        published += 100
        # Keep a bounded backlog so the figure is the relay's rate, not the publisher's.
        if published - hops > 1000:
            room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(room.wait(), max(0.0, deadline - time.perf_counter()))
    secs = time.perf_counter() - start
    await relay_consumer.stop(drain_timeout_s=2)
    await sink_consumer.stop(drain_timeout_s=2)
    record(name, "two-hop relay (A -> B), end to end", hops, secs)


# -- state store ----------------------------------------------------------------------------


async def transition(store: StateStore, account_id: str) -> int:
    """One worker transition: read order + account, write both if unchanged."""
    while True:
        order = await store.get_order(account_id, "o1")
        account = await store.get_account(account_id)
        assert order is not None and account is not None
        try:
            await store.commit(
                account_id,
                [
                    Write("order", "o1", order.version, {**order.data, "n": order.data["n"] + 1}),
                    Write("account", account_id, account.version, account.data),
                ],
            )
            return 1
        except VersionConflict:
            continue


async def bench_state(name: str, store: StateStore, duration_s: float) -> None:
    accounts = [f"bench:{i}" for i in range(50)]
    for account_id in accounts:
        await store.commit(
            account_id,
            [
                Write("account", account_id, 0, {"balance": "1000.00"}),
                Write("order", "o1", 0, {"n": 0, "applied": []}),
            ],
        )

    ops, secs = await for_duration(duration_s, lambda: transition(store, accounts[0]))
    record(name, "CAS transitions, sequential", ops, secs)

    async def fifty() -> int:
        counts = await asyncio.gather(*(transition(store, a) for a in accounts))
        return sum(counts)

    ops, secs = await for_duration(duration_s, fifty)
    record(name, "CAS transitions, 50 concurrent tasks", ops, secs)


# -- database -------------------------------------------------------------------------------


async def bench_db(name: str, url: str, duration_s: float) -> None:
    db = SqlDatabase(url, batch_size=100)
    await db.connect()
    counter = 0

    async def insert_batch() -> int:
        nonlocal counter
        events = [
            EventRecord(
                event_id=f"ev-{counter + i}",
                order_id=f"o{(counter + i) % 97}",
                account_id="live:6",
                kind="ORDER_FILLED",
                payload={"avg_px": "1.10005", "cum_qty": "1.00"},
                exec_id=f"x-{counter + i}",
            )
            for i in range(100)
        ]
        counter += 100
        return await db.insert_events(events)

    try:
        ops, secs = await for_duration(duration_s, insert_batch)
        record(name, "event inserts, batches of 100", ops, secs)
        replay_start = time.perf_counter()
        counter = 0
        replayed = await insert_batch()
        record(
            name, "replayed batch of 100 (all duplicates)", 100, time.perf_counter() - replay_start
        )
        assert replayed == 0
    finally:
        await db.close()


# -- main -----------------------------------------------------------------------------------


async def main(duration_s: float, memory_only: bool) -> None:
    run = uuid.uuid4().hex[:8]
    print(f"execflow backends benchmark, {duration_s:.1f} s per measurement\n", flush=True)

    memory_bus = InMemoryBus(QueueNames(f"bench{run}"))
    await memory_bus.connect()
    await bench_bus("memory", memory_bus, duration_s)
    await memory_bus.close()
    await bench_state("memory", InMemoryStateStore(), duration_s)

    with tempfile.TemporaryDirectory() as tmp:
        await bench_db("sqlite", f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}", duration_s)

    if memory_only:
        return

    if answers(5672):
        rabbit = RabbitMQBus(
            AMQP_URL, QueueNames(f"bench{run}"), connection_name=f"execflow-bench-{run}"
        )
        await rabbit.connect()
        try:
            await bench_bus("rabbitmq", rabbit, duration_s)
        finally:
            declared = set(rabbit.declared_queues)
            await rabbit.close()
            await delete_queues(AMQP_URL, sorted(declared))
    else:
        print("  rabbitmq   not reachable on 127.0.0.1:5672: skipped")

    if answers(6379):
        redis_store = RedisStateStore(REDIS_URL, pool_size=64, key_prefix=f"efbench{run}")
        await redis_store.connect()
        try:
            await bench_state("redis", redis_store, duration_s)
        finally:
            await redis_store.flush_all()
            await redis_store.close()
    else:
        print("  redis      not reachable on 127.0.0.1:6379: skipped")

    if answers(5432):
        database = f"execflow_bench_{run}"
        admin = await asyncpg.connect(PG_ADMIN_DSN)
        await admin.execute(f'CREATE DATABASE "{database}"')
        await admin.close()
        try:
            await bench_db("postgresql", f"{PG_BASE_URL}/{database}", duration_s)
        finally:
            admin = await asyncpg.connect(PG_ADMIN_DSN)
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            await admin.close()
    else:
        print("  postgresql not reachable on 127.0.0.1:5432: skipped")


def print_table() -> None:
    print()
    header = (
        f"| {'backend':<10} | {'measurement':<40} | {'ops':>9} | {'seconds':>7} | {'ops/s':>10} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(c) + 0) for c in header.split("|")[1:-1]) + "|")
    for backend, what, ops, secs in rows:
        rate = ops / secs if secs > 0 else 0.0
        print(f"| {backend:<10} | {what:<40} | {ops:>9,} | {secs:>7.2f} | {rate:>10,.0f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=2.0)
    parser.add_argument("--memory-only", action="store_true")
    args = parser.parse_args()
    try:
        asyncio.run(main(args.duration_s, args.memory_only))
    finally:
        print_table()
