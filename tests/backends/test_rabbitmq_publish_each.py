"""``_publish_each``: one publish awaited inline gives what ``asyncio.gather`` gave."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from execflow.backends.rabbitmq import _publish_each


class FakeExchange:
    """Publishes by running ``outcome`` (a result, an exception, or a coroutine to await)."""

    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome

    async def publish(self, message: Any, routing_key: str, mandatory: bool) -> Any:
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        if asyncio.iscoroutine(self.outcome):
            return await self.outcome
        return self.outcome


def channel_of(exchange: FakeExchange) -> Any:
    return SimpleNamespace(default_exchange=exchange)


async def test_one_publish_returns_its_result_or_its_error() -> None:
    assert await _publish_each(channel_of(FakeExchange("ok")), "q", ["m"]) == ["ok"]  # type: ignore[list-item]
    error = ConnectionError("lost")
    assert await _publish_each(channel_of(FakeExchange(error)), "q", ["m"]) == [error]  # type: ignore[list-item]


async def test_a_publish_whose_future_was_cancelled_is_a_result_not_our_cancellation() -> None:
    cancelled = asyncio.CancelledError()
    [result] = await _publish_each(channel_of(FakeExchange(cancelled)), "q", ["m"])  # type: ignore[list-item]
    assert result is cancelled


async def test_cancelling_the_publisher_still_cancels_it() -> None:
    task = asyncio.create_task(
        _publish_each(channel_of(FakeExchange(asyncio.sleep(10))), "q", ["m"])  # type: ignore[list-item]
    )
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_several_publishes_keep_their_order() -> None:
    results = await _publish_each(channel_of(FakeExchange("ok")), "q", ["a", "b", "c"])  # type: ignore[list-item]
    assert results == ["ok", "ok", "ok"]
