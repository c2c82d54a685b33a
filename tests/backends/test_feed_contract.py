"""The event feed: every listener hears every announcement; a stopped one hears none."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aio_pika
import aio_pika.exceptions
import pytest

from execflow.backends.feed import EventFeed, InMemoryFeed, decode_hint, encode_hint
from execflow.backends.rabbitmq_feed import RabbitMQFeed
from tests.backends.conftest import unique
from tests.services import AMQP_URL, need_service


@pytest.fixture(params=["memory", pytest.param("rabbitmq", marks=pytest.mark.integration)])
async def feed(request: pytest.FixtureRequest) -> AsyncIterator[EventFeed]:
    if request.param == "memory":
        made: EventFeed = InMemoryFeed()
    else:
        need_service("rabbitmq")
        made = RabbitMQFeed(AMQP_URL, unique("eftest."))
    await made.connect()
    try:
        yield made
    finally:
        await made.close()  # the exchange goes with its last listener


async def _until(heard: list[frozenset[str]], count: int) -> None:
    for _ in range(500):
        if len(heard) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"heard {len(heard)} announcements, expected {count}")


async def test_every_listener_hears_every_announcement(feed: EventFeed) -> None:
    one: list[frozenset[str]] = []
    two: list[frozenset[str]] = []

    async def first(accounts: frozenset[str]) -> None:
        one.append(accounts)

    async def second(accounts: frozenset[str]) -> None:
        two.append(accounts)

    listening = await feed.listen(first)
    await feed.listen(second)
    await feed.announce(["live:6", "live:7"])
    await _until(one, 1)
    await _until(two, 1)
    await listening.stop()
    await feed.announce(["demo:1"])
    await _until(two, 2)
    await asyncio.sleep(0.05)
    assert one == [frozenset({"live:6", "live:7"})]
    assert two == [frozenset({"live:6", "live:7"}), frozenset({"demo:1"})]


def test_the_wire_form_round_trips_and_refuses_garbage() -> None:
    assert decode_hint(encode_hint(["b", "a", "a"])) == frozenset({"a", "b"})
    assert decode_hint(b"{}") is None and decode_hint(b"\xff") is None
    assert decode_hint(b"[1]") is None


@pytest.mark.integration
async def test_rabbitmq_leaves_no_exchange_behind() -> None:
    need_service("rabbitmq")
    feed = RabbitMQFeed(AMQP_URL, unique("eftest."))
    await feed.connect()
    await feed.announce(["live:6"])  # nobody listens: nothing declared, nothing sent
    heard: list[frozenset[str]] = []

    async def hear(accounts: frozenset[str]) -> None:
        heard.append(accounts)

    listening = await feed.listen(hear)
    await feed.announce(["live:6"])
    await _until(heard, 1)
    await listening.stop()
    await feed.close()
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        with pytest.raises(aio_pika.exceptions.ChannelClosed):
            await channel.declare_exchange(feed.exchange_name, passive=True)
