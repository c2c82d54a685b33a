"""The failover connection against a real broker and two fake nodes: a paused one (a proxy
that stops forwarding but still accepts, as the kernel does for a SIGSTOPped node) and a
silent one (accepts, never says a word). The nodes of one cluster serve the same queues:
here every host of the URL is the one local broker, reached directly or through a fake."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika import RobustConnection
from aio_pika.abc import AbstractIncomingMessage

from execflow.backends.rabbitmq_failover import FailoverConnection, connect_failover
from tests.backends.conftest import delete_queues, unique
from tests.services import AMQP_URL, need_service

pytestmark = pytest.mark.integration

GUARD_S = 30.0
DIRECT = "127.0.0.1:5672"


class FakeNode:
    """A TCP listener on a free port: ``silent`` (accepts, never answers) or a proxy to the
    local broker that ``pause`` freezes (accepts, forwards nothing either way, closes
    nothing) until ``resume``. Hand-written: toxiproxy, the library for this, is a server
    binary this suite does not ship; a few lines of asyncio do the job."""

    def __init__(self, *, silent: bool = False) -> None:
        self.silent = silent
        self.accepted = 0
        self.running = asyncio.Event()
        self.running.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> str:
        """Listen; the ``host:port`` to put in a broker URL."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def pause(self) -> None:
        self.running.clear()

    def resume(self) -> None:
        self.running.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.append(writer)
        if self.silent:
            return
        await self.running.wait()
        host, port = DIRECT.split(":")
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        self._writers.append(up_writer)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                await self.running.wait()
                sink.write(data)
                await sink.drain()
        await self.running.wait()  # a paused node closes nothing either
        sink.close()

    async def close(self) -> None:
        self.resume()
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            writer.close()


@pytest.fixture
async def nodes() -> AsyncIterator[tuple[FakeNode, FakeNode]]:
    """A pausable proxy to the broker and a silent node; closed at the end."""
    need_service("rabbitmq")
    proxy, silent = FakeNode(), FakeNode(silent=True)
    try:
        yield proxy, silent
    finally:
        await proxy.close()
        await silent.close()


def url_of(*hosts: str) -> str:
    return AMQP_URL.replace(DIRECT, ",".join(hosts))


async def consuming(
    connection: FailoverConnection, queue_name: str
) -> asyncio.Queue[AbstractIncomingMessage]:
    """A robust consumer of ``queue_name`` on ``connection``; what it receives."""
    received: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

    async def on_message(message: AbstractIncomingMessage) -> None:
        await message.ack()
        await received.put(message)

    channel = await connection.channel()
    queue = await channel.declare_queue(queue_name, durable=True)
    await queue.consume(on_message)
    return received


async def publish_directly(queue_name: str, body: bytes) -> None:
    """One message into ``queue_name``, from a connection of its own (the broker itself)."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.default_exchange.publish(aio_pika.Message(body), routing_key=queue_name)


async def test_a_lost_connection_goes_to_the_next_host_not_back_to_the_paused_one(
    nodes: tuple[FakeNode, FakeNode],
) -> None:
    proxy, silent = nodes
    url = url_of(await proxy.start(), await silent.start(), DIRECT)
    queue_name = unique("eftest.failover.")
    connection = await connect_failover(url, timeout_s=1.0, heartbeat=1, reconnect_interval=0.1)
    try:
        received = await consuming(connection, queue_name)
        await publish_directly(queue_name, b"before")
        assert (await asyncio.wait_for(received.get(), GUARD_S)).body == b"before"

        proxy.pause()  # missed heartbeats (6 s at heartbeat=1), then the next hosts
        await publish_directly(queue_name, b"after")
        message = await asyncio.wait_for(received.get(), GUARD_S)

        assert message.body == b"after"
        assert connection.url.port == 5672
        # the paused host was not tried again; the silent one was, and let go of in time
        assert (proxy.accepted, silent.accepted, connection.failovers) == (1, 1, 2)
    finally:
        await connection.close()
        await delete_queues({queue_name})


async def test_a_restore_that_never_ends_is_given_up_for_the_next_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the node answers the handshake but not the restore (its first after the loss)
    need_service("rabbitmq")
    restore = RobustConnection._on_connected
    calls = 0

    async def hangs_once(self: RobustConnection) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            await asyncio.Event().wait()
        await restore(self)

    monkeypatch.setattr(RobustConnection, "_on_connected", hangs_once)
    queue_name = unique("eftest.failover.")
    connection = await connect_failover(
        url_of(DIRECT, DIRECT), timeout_s=5.0, restore_timeout_s=1.0, reconnect_interval=0.1
    )
    try:
        received = await consuming(connection, queue_name)
        assert connection.transport is not None
        await connection.transport.connection.close(ConnectionResetError("cut"))
        await publish_directly(queue_name, b"after")

        message = await asyncio.wait_for(received.get(), GUARD_S)

        assert message.body == b"after"
        assert (calls, connection.failovers) == (3, 2)
    finally:
        await connection.close()
        await delete_queues({queue_name})
