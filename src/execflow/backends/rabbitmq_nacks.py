"""When the broker's nacks mean the publishing channel itself is stuck, not the queue.

RabbitMQ 3.10 keeps, in each channel, one quorum-queue client state per queue, made on
the channel's first publish to that queue: the queue's members, the leader of the
queue's record first. A channel that makes it while the record still names a leader
whose node just died (the first ~0.3 s after a kill -9, before the new leader updates
the record) starts every later publish to that queue by asking that node whether the
queue's machine is versioned (``rabbit_fifo_client:enqueue``, its first clause): the
node is down, so the broker nacks the publish (``reject_publish``) and keeps the state
as it was. So the channel's publishes to that queue are all nacked, at once, for as
long as the dead node stays down, while every other channel, and a new one, publishes
to the same queue. ``bench/qq_nack_storm.py`` reproduces it (docs/faults.md, "The
channel that nacked every publish").

No queue argument causes it and the client cannot repair that channel's state: only
another channel can publish. ``NackStreaks`` says when: after a queue's publishes on
one channel have been nacked for ``replace_after_s`` with no confirm in between (an
election alone nacks for a moment, if at all; a stuck channel never stops).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["NackStreaks"]


@dataclass
class NackStreaks:
    """Per queue, since when its publishes on one channel have been nacked in a row."""

    replace_after_s: float
    _since_s: dict[str, tuple[object, float]] = field(default_factory=dict)

    def nacked(self, queue: str, channel: object, now_s: float) -> bool:
        """Record a nack of a publish to ``queue`` on ``channel``; True when the channel
        has nacked that queue's publishes for ``replace_after_s``: time to replace it."""
        started = self._since_s.get(queue)
        if started is None or started[0] is not channel:
            self._since_s[queue] = (channel, now_s)
            return self.replace_after_s <= 0
        return now_s - started[1] >= self.replace_after_s

    def confirmed(self, queue: str, channel: object) -> None:
        """A publish to ``queue`` on ``channel`` was confirmed: its streak is over."""
        started = self._since_s.get(queue)
        if started is not None and started[0] is channel:
            del self._since_s[queue]
