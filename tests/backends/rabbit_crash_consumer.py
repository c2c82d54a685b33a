"""A consumer process that takes messages and never acks them; the test kills it (-9)."""

from __future__ import annotations

import asyncio
import sys

from execflow.backends.bus import Delivery, QueueNames
from execflow.backends.rabbitmq import RabbitMQBus


async def main(url: str, prefix: str, queue: str, expected: int) -> None:
    bus = RabbitMQBus(url, QueueNames(prefix), connection_name=f"execflow-test-crash-{prefix}")
    await bus.connect()
    held = 0
    forever = asyncio.Event()

    async def hold(delivery: Delivery) -> None:
        nonlocal held
        held += 1
        if held == expected:
            sys.stdout.write("held\n")
            sys.stdout.flush()
        await forever.wait()

    await bus.consume(queue, hold, prefetch=expected)
    await forever.wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
