"""Which publishing channels a quorum queue nacks after its leader's node dies, and for how long.

An experiment, not a benchmark: a throwaway 3-node RabbitMQ cluster (the fault suite's
``ThrowawayRabbitCluster``; never the default node), one quorum queue declared with
execflow's arguments (``QueueArguments``) on node 1 (so node 1 holds its leader), and
publishers with confirms on a connection to node 2:

* ``old-N``: channels that published before the fault, and go on publishing;
* ``new-N``: channels opened one after the other from the fault on (every
  ``--stagger-s``), each publishing from its opening: a channel aio-pika restores after a
  reconnection is such a channel (its first publish to the queue comes after the fault).

Node 1 is killed (``--mode kill``: SIGKILL) or paused (``--mode pause``: SIGSTOP, with a
10 s ``net_ticktime`` and autoheal, as the partition test). ``--probe-s`` after the
fault, every channel still nacking gets a fresh channel on the same connection, which
publishes a few messages. ``--restart-s`` after the fault the killed node is started
again (the paused one resumed). Printed per channel: acks and nacks, the first ack after
the fault, the last nack, whether the fresh channel was acked; and when the queue's
leader (as ``rabbitmqctl list_queues`` reads it) moved.

With ``--bus`` the new publishers are ``RabbitMQBus`` instances instead (each its own
connection to node 2, opened and the queue declared before the fault, first publish
after it): printed with each, its slowest publish and how many channels it replaced.

    PYTHONPATH=src:. python bench/qq_nack_storm.py --mode kill --runs 3 [--bus]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import aio_pika
import aiormq
from tests.faults.services import ThrowawayRabbitCluster

from execflow.backends.bus import QueueNames
from execflow.backends.rabbitmq import RabbitMQBus
from execflow.backends.rabbitmq_queues import QueueArguments
from execflow.errors import BusError

QUEUE = "nackstorm.db_updates"
PUBLISH_TIMEOUT_S = 5.0


@dataclass
class Channel:
    """What one publishing channel saw: (seconds since the fault, outcome) per publish."""

    name: str
    results: list[tuple[float, str]] = field(default_factory=list)
    slowest_s: float = 0.0  # the slowest publish (a RabbitMQBus publisher's)
    replaced: int = 0  # publishing channels the bus replaced

    def after(self, outcome: str) -> list[float]:
        return [t for t, o in self.results if o == outcome and t >= 0]

    def summary(self) -> str:
        acks, nacks = self.after("ack"), self.after("nack")
        timeouts, errors = self.after("timeout"), self.after("error")
        first_ack = f"{acks[0]:6.2f}" if acks else "  none"
        last_nack = f"{nacks[-1]:6.2f}" if nacks else "  none"
        first = f"{max(self.results[0][0], -1.0):6.2f}" if self.results else "  none"
        return (
            f"{self.name:>9} first publish {first} s  acks {len(acks):5d}  nacks "
            f"{len(nacks):5d}  timeouts {len(timeouts):3d}  errors {len(errors):3d}  "
            f"first ack {first_ack} s  last nack {last_nack} s"
            + (
                f"  slowest {self.slowest_s:5.2f} s  replaced {self.replaced}"
                if self.slowest_s
                else ""
            )
        )


async def publish_once(
    channel: aio_pika.abc.AbstractChannel, record: Channel, fault_at: list[float]
) -> bool:
    """Publish one message and record its outcome; False once the channel is lost."""
    message = aio_pika.Message(f"{record.name}-{len(record.results)}".encode(), delivery_mode=2)
    try:
        await asyncio.wait_for(
            channel.default_exchange.publish(message, routing_key=QUEUE, mandatory=True),
            PUBLISH_TIMEOUT_S,
        )
        outcome = "ack"
    except aiormq.exceptions.DeliveryError:
        outcome = "nack"
    except TimeoutError:
        outcome = "timeout"
    except Exception as exc:  # a channel or connection lost: recorded, and the end of it
        record.results.append((time.monotonic() - fault_at[0], f"error {exc!r}"[:80]))
        return False
    record.results.append((time.monotonic() - fault_at[0], outcome))
    return True


async def publish_loop(
    channel: aio_pika.abc.AbstractChannel,
    record: Channel,
    fault_at: list[float],
    stop: asyncio.Event,
) -> None:
    """Publish one message at a time (every 50 ms) until ``stop`` or the channel is lost."""
    while await publish_once(channel, record, fault_at):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.05)
        if stop.is_set():
            return


async def bus_loop(
    bus: RabbitMQBus, record: Channel, fault_at: list[float], stop: asyncio.Event
) -> None:
    """``RabbitMQBus.publish`` one message at a time (every 50 ms) until ``stop``: an
    error is a publish not confirmed within the bus's ``publish_timeout_s``."""
    while not stop.is_set():
        started = time.monotonic()
        try:
            await bus.publish(QUEUE, b"bus")
            outcome = "ack"
        except BusError:
            outcome = "error"
        record.results.append((time.monotonic() - fault_at[0], outcome))
        record.slowest_s = max(record.slowest_s, time.monotonic() - started)
        record.replaced = getattr(bus, "_replaced_channels", 0)  # 0 before the change
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.05)


async def open_buses(url: str, count: int) -> list[RabbitMQBus]:
    """``count`` buses, connected, the queue declared: nothing published yet."""
    buses = []
    for index in range(count):
        bus = RabbitMQBus(url, QueueNames("nackstorm"), connection_name=f"bus-{index}")
        await bus.connect()
        await bus.declare(QUEUE)
        buses.append(bus)
    return buses


async def probe(
    connection: aio_pika.abc.AbstractConnection, name: str, fault_at: list[float]
) -> Channel:
    """Five publishes on a new channel of ``connection``."""
    record = Channel(name)
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    for _ in range(5):
        if not await publish_once(channel, record, fault_at):
            break
    return record


def nacking(record: Channel, now_s: float) -> bool:
    recent = [o for t, o in record.results if t >= now_s - 2.0]
    return bool(recent) and all(o == "nack" for o in recent)


async def watch_leader(
    cluster: ThrowawayRabbitCluster,
    out: list[tuple[float, str]],
    fault_at: list[float],
    stop: asyncio.Event,
) -> None:
    """Record each change of the queue's leader as ``rabbitmqctl`` reads it."""
    last = ""
    while not stop.is_set():
        try:
            leader = (await asyncio.to_thread(cluster.leaders, "nackstorm")).get(QUEUE, "?")
        except Exception as exc:
            leader = f"? {exc!r}"[:60]
        if leader != last:
            out.append((time.monotonic() - fault_at[0], leader))
            last = leader
        await asyncio.sleep(0.5)


async def one_run(args: argparse.Namespace, number: int) -> None:
    cluster = await asyncio.to_thread(
        ThrowawayRabbitCluster.start,
        3,
        partition_handling="autoheal" if args.mode == "pause" else "",
        net_ticktime_s=10 if args.mode == "pause" else 60,
    )
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        victim, survivor = cluster.nodes[0], cluster.nodes[1]
        declaring = await aio_pika.connect(victim.url)
        async with declaring:
            channel = await declaring.channel()
            arguments = QueueArguments("quorum", "nackstorm.dlq").for_queue(QUEUE)
            await channel.declare_queue(QUEUE, durable=True, arguments=arguments)
        before = await asyncio.to_thread(cluster.leaders, "nackstorm")
        print(f"run {number} ({args.mode}): leader {before.get(QUEUE)}; victim {victim.node}")
        connection = await aio_pika.connect(survivor.url)
        fault_at = [time.monotonic() + 1e6]
        records: list[Channel] = []
        leaders: list[tuple[float, str]] = []
        tasks.append(asyncio.create_task(watch_leader(cluster, leaders, fault_at, stop)))

        async def start(name: str) -> Channel:
            record = Channel(name)
            records.append(record)
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            tasks.append(asyncio.create_task(publish_loop(channel, record, fault_at, stop)))
            return record

        for index in range(args.old):
            await start(f"old-{index}")
        buses = await open_buses(survivor.url, args.new if args.bus else 0)
        await asyncio.sleep(2.0)
        fault_at[0] = time.monotonic()
        if args.mode == "kill":
            await asyncio.to_thread(victim.kill)
        else:
            cluster.pause(victim)
        for index in range(args.new):
            if args.bus:
                records.append(Channel(f"bus-{index}"))
                loop = bus_loop(buses[index], records[-1], fault_at, stop)
                tasks.append(asyncio.create_task(loop))
            else:
                await start(f"new-{index}")
            await asyncio.sleep(args.stagger_s)
        await asyncio.sleep(max(0.0, args.probe_s - (time.monotonic() - fault_at[0])))
        now_s = time.monotonic() - fault_at[0]
        stuck = [r for r in records if nacking(r, now_s)]
        fresh = [await probe(connection, f"fresh<{r.name}", fault_at) for r in stuck]
        await asyncio.sleep(max(0.0, args.restart_s - (time.monotonic() - fault_at[0])))
        restarted_s = time.monotonic() - fault_at[0]
        if args.mode == "kill":
            await asyncio.to_thread(victim.start)
        else:
            cluster.resume(victim)
        back_s = time.monotonic() - fault_at[0]
        await asyncio.sleep(args.after_s)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        moves = ", ".join(f"{max(t, 0.0):.1f} s {n}" for t, n in leaders)
        print(f"  leader (rabbitmqctl, from the fault on): {moves}")
        print(f"  nacking at {now_s:.1f} s: {', '.join(r.name for r in stuck) or 'none'}")
        print(f"  victim back: started {restarted_s:.1f} s, serving {back_s:.1f} s")
        for record in records + fresh:
            print("  " + record.summary())
        for bus in buses:
            await bus.close()
        with contextlib.suppress(Exception):
            await connection.close()
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.to_thread(cluster.close)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("kill", "pause"), default="kill")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--old", type=int, default=2)
    parser.add_argument("--new", type=int, default=12)
    parser.add_argument("--stagger-s", type=float, default=0.25)
    parser.add_argument("--probe-s", type=float, default=15.0)
    parser.add_argument("--restart-s", type=float, default=30.0)
    parser.add_argument("--after-s", type=float, default=15.0)
    parser.add_argument(
        "--bus", action="store_true", help="the new publishers are RabbitMQBus instances"
    )
    args = parser.parse_args()
    for number in range(1, args.runs + 1):
        asyncio.run(one_run(args, number))


if __name__ == "__main__":
    main()
