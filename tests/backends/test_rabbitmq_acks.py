"""Held acks (``rabbitmq_acks``): a run of settled deliveries is one ``basic.ack multiple``,
and no ack ever covers a delivery still in progress."""

from __future__ import annotations

import asyncio

from execflow.backends.rabbitmq_acks import ChannelAcks


class FakeChannel:
    """Records the acks sent, as (delivery tag, multiple)."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, bool]] = []
        self.is_closed = False

    async def basic_ack(self, delivery_tag: int, multiple: bool = False, wait: bool = True) -> None:
        self.sent.append((delivery_tag, multiple))


def acked_by(sent: list[tuple[int, bool]], open_tags: set[int]) -> set[int]:
    """The tags the broker takes as acked: a multiple ack covers every open tag up to it."""
    acked: set[int] = set()
    for tag, multiple in sent:
        acked |= {t for t in open_tags if t <= tag} if multiple else {tag}
    return acked


async def test_a_run_of_acks_in_order_is_one_multiple_ack() -> None:
    channel = FakeChannel()
    acks = ChannelAcks(channel, delay_s=0.01, max_pending=100)
    for tag in (1, 2, 3, 4):
        acks.ack(tag)
    assert channel.sent == []  # held
    await asyncio.sleep(0.05)
    assert channel.sent == [(4, True)]
    assert acks.held == 0


async def test_acks_beyond_a_delivery_in_progress_are_sent_one_by_one() -> None:
    channel = FakeChannel()
    acks = ChannelAcks(channel, delay_s=0.01, max_pending=100)
    for tag in (1, 2, 4, 5):  # 3 is still being handled
        acks.ack(tag)
    await acks.flush()
    assert channel.sent == [(2, True), (4, False), (5, False)]
    assert 3 not in acked_by(channel.sent, {1, 2, 3, 4, 5})
    # 3 done: the run is now 1..5, and only 3 is still unacked at the broker
    acks.ack(3)
    await acks.flush()
    assert channel.sent[-1] == (3, True)
    assert acked_by(channel.sent, {1, 2, 3, 4, 5}) == {1, 2, 3, 4, 5}


async def test_finishing_out_of_order_never_acks_an_unsettled_delivery() -> None:
    channel = FakeChannel()
    acks = ChannelAcks(channel, delay_s=0.01, max_pending=3)
    order = [5, 2, 7, 1, 6, 3]  # 4 never finishes
    for tag in order:
        acks.ack(tag)
        await asyncio.sleep(0)
    await acks.flush()
    assert acked_by(channel.sent, set(range(1, 8))) == {1, 2, 3, 5, 6, 7}


async def test_a_nacked_delivery_does_not_hold_the_run_back() -> None:
    channel = FakeChannel()
    acks = ChannelAcks(channel, delay_s=0.01, max_pending=100)
    acks.ack(1)
    acks.settled_otherwise(2)  # nacked: sent at once by the delivery
    acks.ack(3)
    await acks.flush()
    assert channel.sent == [(3, True)]


async def test_max_pending_sends_without_waiting_for_the_delay() -> None:
    channel = FakeChannel()
    acks = ChannelAcks(channel, delay_s=10.0, max_pending=3)
    for tag in (1, 2, 3):
        acks.ack(tag)
    await asyncio.sleep(0.01)
    assert channel.sent == [(3, True)]
    acks.ack(4)
    await asyncio.sleep(0.01)
    assert channel.sent == [(3, True)]  # held for the delay again
    await acks.flush()
    assert channel.sent == [(3, True), (4, True)]


async def test_a_closed_or_dropped_channel_sends_nothing() -> None:
    channel = FakeChannel()
    acks = ChannelAcks(channel, delay_s=0.01, max_pending=100)
    acks.ack(1)
    acks.drop()  # the channel is gone: the broker requeued its deliveries
    await asyncio.sleep(0.05)
    assert channel.sent == [] and acks.held == 0
    acks.ack(2)
    channel.is_closed = True
    await acks.flush()
    assert channel.sent == []
