"""``wait_quiet`` before a reconciliation: still for a stretch of time, not only a few polls."""

from __future__ import annotations

from execflow.apps.standalone import wait_quiet
from execflow.backends.bus import QueueNames
from execflow.backends.memory_bus import InMemoryBus


class _SlowWriter:
    """A database whose event count stands still a while (a db writer busy with a batch
    whose messages, held unacknowledged, no queue counts), then moves once."""

    def __init__(self, still_calls: int) -> None:
        self.still_calls = still_calls
        self.calls = 0

    async def count_events(self) -> int:
        self.calls += 1
        return 100 if self.calls <= self.still_calls else 101


async def test_quiet_polls_alone_end_inside_a_slow_batch_a_quiet_time_does_not() -> None:
    bus = InMemoryBus(QueueNames("t"))
    queues = list(bus.queues.all())

    polls_only = _SlowWriter(still_calls=12)
    await wait_quiet(bus, queues, polls_only, quiet_polls=6)  # type: ignore[arg-type]
    assert polls_only.calls <= 12  # returned before the batch landed

    with_time = _SlowWriter(still_calls=12)
    await wait_quiet(bus, queues, with_time, quiet_polls=6, quiet_s=1.0)  # type: ignore[arg-type]
    assert with_time.calls > 12  # it saw the count move, then waited still again
