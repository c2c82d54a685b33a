"""Acks of one consumer channel, sent together: one ``basic.ack multiple`` for a run of them.

Every ack is a frame the client writes and the broker handles (on a quorum queue, a
settle command in its log). A consumer's acks come in bursts, so ``ChannelAcks`` holds
them for ``delay_s`` (or until ``max_pending``) and sends them then: ``basic.ack`` with
``multiple=True`` for the run of deliveries that are all settled from the channel's
first, one ``basic.ack`` each for acks beyond a delivery still in progress.

Why it is safe: an ack is only ever asked for after the message's effects are durable
(DESIGN §6), and holding it back only delays it; a process that dies meanwhile has
its unacked messages delivered again, which at-least-once delivery already allows
(effects apply once, by exec_id). ``multiple=True`` acks every unacked delivery up to
a tag on the channel, so it is sent only for a tag below which every delivery is
settled here: delivery tags on a channel are 1, 2, 3... (AMQP), so the settled ones
are counted from 1 without relying on the order handlers start or finish in. A nack
or reject goes out at once and counts as settled. A channel that closed took its
unacked deliveries back to their queues: its held acks are dropped (its tags mean
nothing on the channel that replaces it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Protocol

__all__ = ["AckChannel", "ChannelAcks"]

log = logging.getLogger("execflow.backends.rabbitmq_acks")


class AckChannel(Protocol):
    """What ``ChannelAcks`` needs of an aiormq channel."""

    @property
    def is_closed(self) -> bool:
        """True once the channel is closed."""
        ...

    def basic_ack(
        self, delivery_tag: int, multiple: bool = False, wait: bool = True
    ) -> Awaitable[None]:
        """Send ``basic.ack``."""
        ...


class ChannelAcks:
    """The acks of one channel not sent yet, and which of its deliveries are settled."""

    def __init__(self, channel: AckChannel, delay_s: float, max_pending: int) -> None:
        self.channel = channel
        self._delay_s = delay_s
        self._max_pending = max(1, max_pending)
        self._covered = 0
        """Every delivery tag up to this one is settled (acked, sent or held, or nacked)."""
        self._settled: set[int] = set()
        """Settled tags above ``_covered`` (a lower delivery is still in progress)."""
        self._held: list[int] = []
        """Acked tags not sent yet."""
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None
        self.frames_sent = 0

    @property
    def held(self) -> int:
        """Acks asked for and not sent yet."""
        return len(self._held)

    def ack(self, tag: int) -> None:
        """Hold the ack of ``tag`` (a delivery whose effects are durable); sent within
        ``delay_s``, or at once when ``max_pending`` are held."""
        self._settle(tag)
        self._held.append(tag)
        if len(self._held) >= self._max_pending:
            self._start_flush()
        elif self._timer is None and self._flushing is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._delay_s, self._start_flush)

    def settled_otherwise(self, tag: int) -> None:
        """``tag`` was nacked or rejected (sent at once): it no longer holds a run back."""
        self._settle(tag)

    async def flush(self) -> None:
        """Send every held ack now (before the channel closes, or when asked)."""
        self._cancel_timer()
        if self._flushing is not None:
            await asyncio.wait({self._flushing})
        await self._send()

    def drop(self) -> None:
        """The channel is gone: forget what is held (the broker requeued those messages)."""
        self._cancel_timer()
        self._held.clear()
        self._settled.clear()

    # -- inside -----------------------------------------------------------------------------

    def _settle(self, tag: int) -> None:
        if tag <= self._covered:
            return
        self._settled.add(tag)
        while self._covered + 1 in self._settled:
            self._covered += 1
            self._settled.discard(self._covered)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _start_flush(self) -> None:
        self._cancel_timer()
        if self._flushing is not None or not self._held:
            return
        task = asyncio.get_running_loop().create_task(self._send())
        self._flushing = task
        task.add_done_callback(self._flushed)

    def _flushed(self, task: asyncio.Task[None]) -> None:
        self._flushing = None
        if not task.cancelled() and task.exception() is not None:
            # The channel closed under it: the broker requeues those messages.
            log.warning("held acks not sent", extra={"error": repr(task.exception())})
        if self._held and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._delay_s, self._start_flush)

    async def _send(self) -> None:
        """One ``multiple`` ack for the held tags of the settled run, one each for the rest."""
        if not self._held:
            return
        held, self._held = sorted(self._held), []
        if self.channel.is_closed:
            return
        run = [tag for tag in held if tag <= self._covered]
        beyond = held[len(run) :]
        if run:
            # the highest held tag of the run: an unacked delivery, and every one below is settled
            await self.channel.basic_ack(run[-1], multiple=True, wait=False)
            self.frames_sent += 1
        for tag in beyond:
            await self.channel.basic_ack(tag, multiple=False, wait=False)
            self.frames_sent += 1
