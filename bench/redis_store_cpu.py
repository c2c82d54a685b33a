"""The client's CPU per worker transition on the Redis state store, against a baseline tree.

    PYTHONPATH=src .venv/bin/python bench/redis_store_cpu.py [--transitions 3000]
        [--rounds 5] [--baseline-src OTHER/src] [--redis-url URL]

A transition is what a worker asks of the store per report: ``read_for_transition``
(one pipelined round trip) and a compare-and-set ``commit`` of the order and its
account. Each round runs the transitions one after the other in a child process per
tree (this checkout's ``execflow`` and, with ``--baseline-src``, another one), the two
alternating, and prints the child's CPU seconds per transition (``time.process_time``:
the client's share only; the server's is the same commands in both). The rounds'
medians and their ratio are printed last: on this shared machine absolute figures drift
with the neighbours, the ratio of alternating rounds holds. Keys live under a unique
prefix and are removed at the end of each round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REDIS_URL = "redis://127.0.0.1:6379/0"


async def measure(url: str, transitions: int) -> float:
    """CPU seconds of this process per transition (after a warm-up of 200)."""
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
        for _ in range(200):
            await transition()
        started = time.process_time()
        for _ in range(transitions):
            await transition()
        return (time.process_time() - started) / transitions
    finally:
        await store.flush_all()
        await store.close()


def child(src: Path, url: str, transitions: int) -> float:
    """One round in a child process whose ``execflow`` comes from ``src``."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    command = [sys.executable, __file__, "--child", "--transitions", str(transitions)]
    out = subprocess.run(
        [*command, "--redis-url", url],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(json.loads(out.strip().splitlines()[-1])["cpu_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transitions", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline-src", type=Path, default=None)
    parser.add_argument("--redis-url", default=REDIS_URL)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        cpu_s = asyncio.run(measure(args.redis_url, args.transitions))
        print(json.dumps({"cpu_s": cpu_s}))
        return
    here = Path(__file__).resolve().parent.parent / "src"
    trees = [("this tree", here)]
    if args.baseline_src is not None:
        trees.append(("baseline", args.baseline_src.resolve()))
    figures: dict[str, list[float]] = {name: [] for name, _ in trees}
    for round_ in range(1, args.rounds + 1):
        for name, src in trees if round_ % 2 else reversed(trees):
            cpu_s = child(src, args.redis_url, args.transitions)
            figures[name].append(cpu_s)
            print(f"round {round_}  {name:9}  {cpu_s * 1e6:7.1f} us CPU per transition")
    medians = {name: statistics.median(values) for name, values in figures.items()}
    for name, value in medians.items():
        print(f"median     {name:9}  {value * 1e6:7.1f} us CPU per transition")
    if "baseline" in medians:
        ratio = medians["this tree"] / medians["baseline"]
        print(f"this tree / baseline: {ratio:.3f}")


if __name__ == "__main__":
    main()
