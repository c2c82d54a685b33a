"""A fence through ``db_updates``: wait until the db writer has written what came before.

A rebuild of the state store reads the database; a DB event still queued for the db
writer at that moment belongs to a report that was already acknowledged (its effects
were published), so no redelivery brings it back: the rebuilt state would miss it and
the database would get it a moment later (docs/state-rebuild.md). Before a rebuild
reads, it publishes a fence message to ``db_updates`` and waits for its mark.

The db writer passes a fence once every event it took before the fence is written and
none of its earlier writes is waiting for a retry; then it marks the fence in the state
store (a lifecycle-index entry, like the store's other markers) and acknowledges it.
The queue hands messages out in order and the runner takes them in order, so "taken
before the fence" covers everything published before it. With several db writer
instances a fence vouches only for the one that took it (docs/state-rebuild.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import orjson

from execflow.logs.events import EventLogger
from execflow.pipeline.services import Services

__all__ = ["FENCE_KEY", "FENCE_PREFIX", "fence_id_of", "fence_key", "wait_for_db_writer"]

FENCE_KEY = "fence"
"""The only key of a fence message's JSON body (a DB event's body is a tagged effect)."""
FENCE_PREFIX = "__execflow_db_fence__:"
"""Lifecycle-index key prefix of a passed fence's mark."""

_POLL_S = 0.01
_WARN_EVERY_S = 5.0


def fence_key(fence_id: str) -> str:
    """Where the db writer marks fence ``fence_id`` as passed."""
    return f"{FENCE_PREFIX}{fence_id}"


def fence_id_of(data: Any) -> str | None:
    """The fence id of a decoded ``db_updates`` body, or ``None`` for anything else."""
    if isinstance(data, Mapping) and len(data) == 1 and isinstance(data.get(FENCE_KEY), str):
        return str(data[FENCE_KEY])
    return None


async def wait_for_db_writer(services: Services, log: EventLogger) -> None:
    """Publish a fence to ``db_updates`` and return once the db writer passed it.

    Waits as long as it takes (the state is not rebuilt from a database that is behind):
    a ``STATE:DB_FENCE_WAIT`` warning every few seconds says so.
    """
    fence_id = f"{services.instance}-{services.ids.new_id()}"
    clock = services.clock
    started = clock.monotonic()
    warn_at = started + _WARN_EVERY_S
    queue = services.queues.db_updates
    body = orjson.dumps({FENCE_KEY: fence_id})
    await services.bus.publish(queue, body, message_id=f"fence:{fence_id}")
    key = fence_key(fence_id)
    while await services.state.get_lifecycle(key) is None:
        await asyncio.sleep(_POLL_S)
        if clock.monotonic() >= warn_at:
            warn_at += _WARN_EVERY_S
            log.warning(
                "STATE:DB_FENCE_WAIT",
                fence_id=fence_id,
                queue=queue,
                waited_s=round(clock.monotonic() - started, 3),
            )
    log.info(
        "STATE:DB_FENCE_PASSED",
        fence_id=fence_id,
        waited_ms=round((clock.monotonic() - started) * 1000, 3),
    )
