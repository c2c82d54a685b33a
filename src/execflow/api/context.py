"""What every route reads: the services, the intake and the API's own tools, built once."""

from __future__ import annotations

from dataclasses import dataclass, field

from execflow.api.idempotency import Idempotency
from execflow.api.keys import KeyVerifier
from execflow.api.ratelimit import RateLimiter
from execflow.api.stream import StreamHub
from execflow.backends.api_store import ApiStore
from execflow.logs.events import EventLogger
from execflow.pipeline.intake import OrderIntake
from execflow.pipeline.services import Services

__all__ = ["COMPONENT", "ApiContext", "Readiness"]

COMPONENT = "api"


@dataclass(slots=True)
class Readiness:
    """Set by the server once the state store was rebuilt (or found complete)."""

    state_rebuilt: bool = False


@dataclass(frozen=True, slots=True)
class ApiContext:
    """The composition root's gift to the app (``create_app(context)``)."""

    services: Services
    intake: OrderIntake
    store: ApiStore
    verifier: KeyVerifier
    limiter: RateLimiter
    idempotency: Idempotency
    log: EventLogger
    hub: StreamHub
    readiness: Readiness = field(default_factory=Readiness)

    @classmethod
    def build(cls, services: Services, intake: OrderIntake, store: ApiStore) -> ApiContext:
        """Everything from the settings of ``services``."""
        settings = services.settings
        log = services.logger(COMPONENT)
        return cls(
            services=services,
            intake=intake,
            store=store,
            verifier=KeyVerifier(store, services.clock, settings.api_key_cache_s),
            limiter=RateLimiter(services.clock, settings.api_rate_per_s, settings.api_rate_burst),
            idempotency=Idempotency(
                store,
                services.clock,
                settings.api_idempotency_ttl_s,
                settings.api_idempotency_wait_s,
                log,
            ),
            log=log,
            hub=StreamHub(services.feed),
        )
