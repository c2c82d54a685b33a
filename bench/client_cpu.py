"""The clients' CPU per operation on the real servers, against a baseline tree.

    PYTHONPATH=src .venv/bin/python bench/client_cpu.py [--what transition|publish]
        [--operations 3000] [--rounds 5] [--baseline-src OTHER/src]
        [--redis-url URL] [--amqp-url URL]

``transition``: what a worker asks of the Redis state store per report,
``read_for_transition`` (one pipelined round trip) and a compare-and-set ``commit`` of
the order and its account. ``publish``: one persistent message published to RabbitMQ
and its confirm awaited (``RabbitMQBus.publish``), as a worker publishes its effects.
Each round runs the operations one after the other in a child process per tree (this
checkout's ``execflow`` and, with ``--baseline-src``, another one), the two alternating,
and prints the child's CPU seconds per operation (``time.process_time``: the client's
share only, kernel included; the server's is the same commands in both). The rounds'
medians and their ratio are printed last: on this shared machine absolute figures drift
with the neighbours, the ratio of alternating rounds holds. Keys and queues live under
unique names and are removed at the end of each round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from _trees import run_child, tree_env  # bench/, first on sys.path: see its doc

REDIS_URL = "redis://127.0.0.1:6379/0"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


async def per_operation(operation: Callable[[], Awaitable[None]], count: int) -> float:
    """CPU seconds of this process per ``operation`` (after a warm-up of 200)."""
    for _ in range(200):
        await operation()
    started = time.process_time()
    for _ in range(count):
        await operation()
    return (time.process_time() - started) / count


async def publishes(url: str, count: int, prefix: str) -> float:
    """CPU seconds per confirmed publish of a 600-byte message with two headers, on queues
    under ``prefix`` (the dead-letter queue that ``connect`` declares included), which the
    parent deletes with this checkout's ``delete_queues``: a baseline tree may lack it."""
    from execflow.backends.bus import QueueNames
    from execflow.backends.rabbitmq import RabbitMQBus

    bus = RabbitMQBus(url, QueueNames(prefix))
    await bus.connect()
    queue = bus.queues.name("publishes")
    headers = {"x-kind": "fill", "x-account": "live:1"}

    async def publish() -> None:
        await bus.publish(queue, b"x" * 600, headers)

    try:
        return await per_operation(publish, count)
    finally:
        await bus.close()


async def transitions(url: str, count: int) -> float:
    """CPU seconds per transition."""
    from execflow.backends.redis_state import RedisStateStore
    from execflow.backends.state import Write

    store = RedisStateStore(url, key_prefix=f"efbench-{uuid.uuid4().hex[:8]}")
    await store.connect()
    account_id = "live:1"
    account = {"balance": "10000.00", "equity": "10000.00", "positions": []}
    order = {"state": "open", "symbol": "EURUSD", "volume": "1.00"}
    version = {"order": 0, "account": 0}

    async def transition() -> None:
        await store.read_for_transition(account_id, "o1")
        await store.commit(
            account_id,
            [
                Write("order", "o1", version["order"], order),
                Write("account", account_id, version["account"], account),
            ],
        )
        version["order"] += 1
        version["account"] += 1

    try:
        return await per_operation(transition, count)
    finally:
        await store.flush_all()
        await store.close()


def child(src: Path, args: argparse.Namespace) -> float:
    """One round in a child process whose ``execflow`` comes from ``src``."""
    from execflow.apps.bench import delete_queues
    from execflow.backends.bus import QueueNames

    names = QueueNames(f"efbench-pub-{uuid.uuid4().hex[:8]}")
    command = [sys.executable, __file__, "--child", "--what", args.what]
    command += ["--operations", str(args.operations), f"--{args.what}-url", args.url]
    try:
        out = run_child([*command, "--prefix", names.prefix], tree_env(src))
    finally:
        if args.what == "publish":
            asyncio.run(delete_queues(args.url, [names.name("publishes"), names.dlq]))
    return float(json.loads(out.strip().splitlines()[-1])["cpu_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--what", choices=["transition", "publish"], default="transition")
    parser.add_argument("--operations", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline-src", type=Path, default=None)
    parser.add_argument("--redis-url", "--transition-url", dest="redis_url", default=REDIS_URL)
    parser.add_argument("--amqp-url", "--publish-url", dest="amqp_url", default=AMQP_URL)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", default="efbench-pub", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.url = args.redis_url if args.what == "transition" else args.amqp_url
    if args.child:
        if args.what == "transition":
            cpu_s = asyncio.run(transitions(args.url, args.operations))
        else:
            cpu_s = asyncio.run(publishes(args.url, args.operations, args.prefix))
        print(json.dumps({"cpu_s": cpu_s}))
        return
    here = Path(__file__).resolve().parent.parent / "src"
    trees = [("this tree", here)]
    if args.baseline_src is not None:
        trees.append(("baseline", args.baseline_src.resolve()))
    figures: dict[str, list[float]] = {name: [] for name, _ in trees}
    for round_ in range(1, args.rounds + 1):
        for name, src in trees if round_ % 2 else reversed(trees):
            cpu_s = child(src, args)
            figures[name].append(cpu_s)
            print(f"round {round_}  {name:9}  {cpu_s * 1e6:7.1f} us CPU per {args.what}")
    medians = {name: statistics.median(values) for name, values in figures.items()}
    for name, value in medians.items():
        print(f"median     {name:9}  {value * 1e6:7.1f} us CPU per {args.what}")
    if "baseline" in medians:
        ratio = medians["this tree"] / medians["baseline"]
        print(f"this tree / baseline: {ratio:.3f}")


if __name__ == "__main__":
    main()
