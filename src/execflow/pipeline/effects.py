"""Publishing a transition's effects: lifecycle first, then the confirmed publishes.

Every publish returns only once the broker confirmed it, so when ``publish_effects``
returns the runner may ack. Message ids are deterministic (``event_id`` for DB events,
the lifecycle id for LP requests): re-publishing after a crash is harmless downstream.
"""

from __future__ import annotations

from collections.abc import Iterable
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
    """Publish ``effects`` in order: DB events to db_updates, LP requests to provider_requests.

    Each LP request's lifecycle id is registered before the request leaves, so the
    report answering it can always be routed.
    """
    queues = services.queues
    db_events = lp_requests = 0
    for effect in effects:
        headers = {_H_ORDER_ID: effect_order_id(effect)}
        if trace_id is not None:
            headers[H_TRACE_ID] = trace_id
        if isinstance(effect, LpRequest):
            request = effect.request
            await services.state.put_lifecycle(
                request.lifecycle_id, lifecycle_to_dict(lifecycle_of(request))
            )
            headers[H_LIFECYCLE_ID] = request.lifecycle_id
            await services.bus.publish(
                queues.provider_requests,
                orjson.dumps(request_to_dict(request)),
                headers,
                message_id=request.lifecycle_id,
            )
            lp_requests += 1
        else:
            await services.bus.publish(
                queues.db_updates,
                orjson.dumps(effect_to_dict(effect)),
                headers,
                message_id=effect.event_id,
            )
            db_events += 1
    return Published(db_events, lp_requests)


def effect_order_id(effect: Effect) -> str:
    """The order an effect is about."""
    return effect.order_id if isinstance(effect, DbEvent) else effect.request.order_id
