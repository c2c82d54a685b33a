"""Queue depth and consumers per queue, read from the broker on a timer.

The broker is the only place that knows how many messages wait in a queue and how many
consumers are attached to it (RabbitMQ answers a queue declaration with both; the
in-memory bus counts its own). One process per deployment samples them (the
dispatcher, as it also counts stuck orders) into ``execflow_queue_depth`` and
``execflow_queue_consumers``: the backlog and queue-without-consumer alerts read these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from execflow.backends.bus import Bus
from execflow.errors import ExecflowError
from execflow.logs.events import EventLogger
from execflow.pipeline.periodic import Periodic

if TYPE_CHECKING:
    # only annotations: prometheus_client loads where metrics are configured (cli.run)
    from execflow.metrics import Metrics

__all__ = ["QueueSampler", "sampled_queues"]


def sampled_queues(bus: Bus, lps: list[str]) -> tuple[str, ...]:
    """Every pipeline queue, the DLQ and each configured LP's request queue."""
    names = bus.queues
    per_lp = tuple(names.provider_requests_of(lp) for lp in sorted(lps))
    return (*names.all(), *per_lp)


class QueueSampler:
    """Sets the queue gauges for ``queues`` now and every ``interval_s`` until ``stop``."""

    def __init__(
        self,
        bus: Bus,
        metrics: Metrics,
        log: EventLogger,
        queues: tuple[str, ...],
        *,
        interval_s: float,
    ) -> None:
        self._bus = bus
        self._metrics = metrics
        self._log = log
        self._queues = queues
        self._failing = False
        self._timer = Periodic(
            "queue-sampler",
            self.sample,
            interval_s,
            on_error=self._failed,
            on_success=self._sampled,
        )

    async def sample(self) -> dict[str, tuple[int, int]]:
        """Read every queue's ``(depth, consumers)`` from the broker and set the gauges."""
        found: dict[str, tuple[int, int]] = {}
        for queue in self._queues:
            depth, consumers = await self._bus.queue_counts(queue)
            self._metrics.set_queue_depth(queue, depth, consumers=consumers)
            found[queue] = (depth, consumers)
        return found

    def start(self) -> None:
        """Sample now and every ``interval_s`` until ``stop``."""
        self._timer.start()

    async def stop(self) -> None:
        """Stop sampling."""
        await self._timer.stop()

    def _failed(self, exc: ExecflowError) -> None:
        # the broker away: the gauges keep their last values, the scrape's timestamps and
        # the consumers' own alerts tell the rest
        if not self._failing:
            self._log.warning("QUEUES:SAMPLE_FAILED", error=exc)
        self._failing = True

    def _sampled(self) -> None:
        if self._failing:
            self._log.info("QUEUES:SAMPLED_AGAIN")
        self._failing = False
