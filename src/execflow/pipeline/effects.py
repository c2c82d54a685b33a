"""Publishing a transition's effects: DB events at once, LP requests after their lifecycles.

Every publish returns only once the broker confirmed it, so when ``publish_effects``
returns the runner may ack. Message ids are deterministic (``event_id`` for DB events,
the lifecycle id for LP requests): re-publishing after a crash is harmless downstream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass

import orjson

from execflow.backends.bus import H_TRACE_ID
from execflow.domain.codec import effect_to_dict, lifecycle_to_dict, request_to_dict
from execflow.domain.effects import DbEvent, Effect, LpRequest
from execflow.domain.models import lifecycle_of
from execflow.pipeline.services import Services

__all__ = ["H_LIFECYCLE_ID", "H_LP", "Published", "publish_effects"]

H_LIFECYCLE_ID = "lifecycle_id"
_H_ORDER_ID = "order_id"
H_LP = "lp"
"""Header naming the LP a routed provider request is for."""


@dataclass(frozen=True, slots=True)
class Published:
    """How many effects of each kind went out."""

    db_events: int = 0
    lp_requests: int = 0


async def publish_effects(
    services: Services, effects: Iterable[Effect], trace_id: str | None
) -> Published:
    """Publish ``effects``: DB events to db_updates, LP requests to provider_requests.

    The DB events go out at once, before and whatever happens to the state store: a
    committed transition whose DB event never reached the broker exists only in the
    state store, and a store that loses everything then (a Redis restart) takes it
    along, while a later action on the same account may already have published an
    account snapshot that holds it (docs/state-rebuild.md). Every LP request's
    lifecycle id is registered before that request is published, so the report
    answering it can always be routed. This returns once the broker confirmed every
    publish; the first failure is raised after all of them settled.
    """
    queues = services.queues
    bus = services.bus
    events: list[tuple[str, bytes, dict[str, str], str]] = []
    requests: list[tuple[LpRequest, dict[str, str]]] = []
    for effect in effects:
        headers = {_H_ORDER_ID: effect_order_id(effect)}
        if trace_id is not None:
            headers[H_TRACE_ID] = trace_id
        if isinstance(effect, LpRequest):
            requests.append((effect, headers))
        else:
            body = orjson.dumps(effect_to_dict(effect))
            events.append((queues.db_updates, body, headers, effect.event_id))
    # The DB events' publishes and the requests' registrations overlap, so the confirms
    # cost one round trip in all, as when everything waited for the registrations.
    pending: list[Awaitable[object]] = [bus.publish(*args) for args in events]
    if requests:
        pending.append(_send_requests(services, requests))
    if len(pending) == 1:
        await pending[0]
    elif pending:
        await _all(pending)
    return Published(len(events), len(requests))


async def _send_requests(
    services: Services, requests: list[tuple[LpRequest, dict[str, str]]]
) -> None:
    """Register every request's lifecycle id (awaited: a fast answer is routable), then publish."""
    for effect, headers in requests:
        request = effect.request
        await services.state.put_lifecycle(
            request.lifecycle_id, lifecycle_to_dict(lifecycle_of(request))
        )
        headers[H_LIFECYCLE_ID] = request.lifecycle_id
    routing = services.settings.lp_routing
    sends = []
    for effect, headers in requests:
        request = effect.request
        lp = routing.lp_for(request.group, request.symbol)
        if lp is not None:
            headers[H_LP] = lp
        body = orjson.dumps(request_to_dict(request))
        queue = services.queues.provider_requests_of(lp)
        sends.append(services.bus.publish(queue, body, headers, request.lifecycle_id))
    if len(sends) == 1:
        await sends[0]
    else:
        await _all(sends)


async def _all(pending: Sequence[Awaitable[object]]) -> None:
    """Await every publish; the first failure is raised once all have settled."""
    results = await asyncio.gather(*pending, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


def effect_order_id(effect: Effect) -> str:
    """The order an effect is about."""
    return effect.order_id if isinstance(effect, DbEvent) else effect.request.order_id
