"""Publishing a transition's effects: lifecycles first, then the confirmed publishes, together.

Every publish returns only once the broker confirmed it, so when ``publish_effects``
returns the runner may ack. Message ids are deterministic (``event_id`` for DB events,
the lifecycle id for LP requests): re-publishing after a crash is harmless downstream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass

import orjson

from execflow.backends.bus import H_TRACE_ID
from execflow.domain.codec import effect_to_dict, lifecycle_to_dict, request_to_dict
from execflow.domain.effects import DbEvent, Effect, LpRequest
from execflow.domain.models import lifecycle_of
from execflow.pipeline.services import Services

__all__ = ["H_LIFECYCLE_ID", "Published", "publish_effects"]

H_LIFECYCLE_ID = "lifecycle_id"
_H_ORDER_ID = "order_id"


@dataclass(frozen=True, slots=True)
class Published:
    """How many effects of each kind went out."""

    db_events: int = 0
    lp_requests: int = 0


async def publish_effects(
    services: Services, effects: Iterable[Effect], trace_id: str | None
) -> Published:
    """Publish ``effects``: DB events to db_updates, LP requests to provider_requests.

    Every LP request's lifecycle id is registered before any publish starts, so the
    report answering it can always be routed; then all publishes go out concurrently
    and this returns once the broker confirmed every one.
    """
    queues = services.queues
    bus = services.bus
    outgoing: list[tuple[str, bytes, dict[str, str], str]] = []
    db_events = lp_requests = 0
    for effect in effects:
        headers = {_H_ORDER_ID: effect_order_id(effect)}
        if trace_id is not None:
            headers[H_TRACE_ID] = trace_id
        if isinstance(effect, LpRequest):
            request = effect.request
            # Registered (awaited) before any publish starts: a fast answer is routable.
            await services.state.put_lifecycle(
                request.lifecycle_id, lifecycle_to_dict(lifecycle_of(request))
            )
            headers[H_LIFECYCLE_ID] = request.lifecycle_id
            body = orjson.dumps(request_to_dict(request))
            outgoing.append((queues.provider_requests, body, headers, request.lifecycle_id))
            lp_requests += 1
        else:
            body = orjson.dumps(effect_to_dict(effect))
            outgoing.append((queues.db_updates, body, headers, effect.event_id))
            db_events += 1
    # The publishes run together, so their confirms overlap instead of costing one round
    # trip each; all are confirmed (or one failed, and the runner retries) on return.
    if len(outgoing) == 1:
        await bus.publish(*outgoing[0])
    elif outgoing:
        await _all([bus.publish(*args) for args in outgoing])
    return Published(db_events, lp_requests)


async def _all(pending: list[Awaitable[str]]) -> None:
    """Await every publish; the first failure is raised once all have settled."""
    results = await asyncio.gather(*pending, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


def effect_order_id(effect: Effect) -> str:
    """The order an effect is about."""
    return effect.order_id if isinstance(effect, DbEvent) else effect.request.order_id
