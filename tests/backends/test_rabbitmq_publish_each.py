"""``_publish_each``: one publish awaited inline gives what ``asyncio.gather`` gave."""

from __future__ import annotations

import asyncio
from typing import Any

import aiormq
import pytest

from execflow.backends.rabbitmq import _Outgoing, _publish_each


class FakeUnderlay:
    """aiormq's channel: publishes by running ``outcome`` (a result, an exception, or a
    coroutine to await)."""

    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome
        self.published: list[tuple[bytes, str, bool]] = []

    async def basic_publish(
        self, body: bytes, *, exchange: str, routing_key: str, properties: Any, mandatory: bool
    ) -> Any:
        self.published.append((body, routing_key, mandatory))
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        if asyncio.iscoroutine(self.outcome):
            return await self.outcome
        return self.outcome


class FakeChannel:
    """aio-pika's robust channel: its aiormq channel, and whether it is closed."""

    def __init__(self, underlay: FakeUnderlay, is_closed: bool = False) -> None:
        self.underlay = underlay
        self.is_closed = is_closed

    async def get_underlay_channel(self) -> FakeUnderlay:
        return self.underlay


def channel_of(underlay: FakeUnderlay, is_closed: bool = False) -> Any:
    return FakeChannel(underlay, is_closed)


def message(body: bytes = b"m") -> _Outgoing:
    return _Outgoing(body, aiormq.spec.Basic.Properties(message_id="id-1"))


async def test_one_publish_returns_its_result_or_its_error() -> None:
    assert await _publish_each(channel_of(FakeUnderlay("ok")), "q", [message()]) == ["ok"]
    error = ConnectionError("lost")
    assert await _publish_each(channel_of(FakeUnderlay(error)), "q", [message()]) == [error]


async def test_a_publish_whose_future_was_cancelled_is_a_result_not_our_cancellation() -> None:
    cancelled = asyncio.CancelledError()
    [result] = await _publish_each(channel_of(FakeUnderlay(cancelled)), "q", [message()])
    assert result is cancelled


async def test_cancelling_the_publisher_still_cancels_it() -> None:
    task = asyncio.create_task(
        _publish_each(channel_of(FakeUnderlay(asyncio.sleep(10))), "q", [message()])
    )
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_several_publishes_keep_their_order() -> None:
    underlay = FakeUnderlay("ok")
    messages = [message(b"a"), message(b"b"), message(b"c")]
    assert await _publish_each(channel_of(underlay), "q", messages) == ["ok", "ok", "ok"]
    assert underlay.published == [(b"a", "q", True), (b"b", "q", True), (b"c", "q", True)]


async def test_a_closed_channel_is_each_message_s_error_not_a_publish() -> None:
    underlay = FakeUnderlay("ok")
    [result] = await _publish_each(channel_of(underlay, is_closed=True), "q", [message()])
    assert isinstance(result, aiormq.exceptions.ChannelInvalidStateError)
    assert underlay.published == []
