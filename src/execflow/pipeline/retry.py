"""Retry and park policies as data: attempts, exponential backoff, jitter, exhaustion."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType

from execflow.domain.codec import CodecError
from execflow.domain.routing import DlqReason
from execflow.errors import ReportError, StoreError, TransitionError, VersionConflict
from execflow.pipeline.completeness import StoreIncomplete
from execflow.settings import Settings

__all__ = [
    "DEFAULT_NON_RETRYABLE",
    "H_CONFLICTS",
    "H_OUTAGES",
    "H_PARKS",
    "H_RETRIES",
    "OnExhausted",
    "RetryPolicy",
    "park_policy",
    "retry_policy",
]

H_RETRIES = "x-retries"
"""Header: failed attempts so far (an exception was raised), as a decimal string."""
H_OUTAGES = "x-outages"
"""Header: times the message came back because a backend was unreachable (never DLQ'd)."""
H_CONFLICTS = "x-conflicts"
"""Header: times the message came back because other writers kept winning its account."""
H_PARKS = "x-parks"
"""Header: times the message was parked so far (a precondition was not met yet)."""

DEFAULT_NON_RETRYABLE: Mapping[type[BaseException], str] = MappingProxyType(
    {
        ReportError: DlqReason.MALFORMED_REPORT.value,
        CodecError: DlqReason.MALFORMED_REPORT.value,
        TransitionError: DlqReason.INVALID_TRANSITION.value,
    }
)
"""Exceptions a retry cannot cure -> the DLQ reason they are dead-lettered with."""


class OnExhausted(StrEnum):
    """What happens when the attempts are used up."""

    DEAD_LETTER = "dead_letter"
    """Publish to the DLQ with ``exhausted_reason`` and the last error."""
    RETRY_FOREVER = "retry_forever"
    """Keep retrying at ``max_delay_s`` (for outages a DLQ cannot fix, e.g. the database)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how late a message comes back, and where it goes in the end.

    Attempt ``n`` (1-based) that fails is retried after
    ``min(max_delay_s, base_delay_s * multiplier**(n-1) * (1 ± jitter))``; attempt
    ``max_attempts`` that fails is the last one.
    """

    max_attempts: int = 5
    base_delay_s: float = 0.2
    max_delay_s: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.2
    non_retryable: Mapping[type[BaseException], str] = field(
        default_factory=lambda: DEFAULT_NON_RETRYABLE
    )
    exhausted_reason: str = DlqReason.MAX_ATTEMPTS.value
    on_exhausted: OnExhausted = OnExhausted.DEAD_LETTER
    outages: tuple[type[BaseException], ...] = (StoreError, StoreIncomplete)
    """Exceptions of exactly these types mean a backend is away (or, ``StoreIncomplete``,
    came back empty and is being rebuilt), not that the message is bad: retried with
    backoff for as long as it lasts, never counted toward the DLQ (other subclasses such
    as ``VersionConflict`` or ``MissingReferenceData`` are not outages)."""
    contention: tuple[type[BaseException], ...] = (VersionConflict,)
    """Exceptions that mean other writers kept committing the same account first (the
    message lost every compare-and-set round of its attempt): the message is fine and
    the pipeline is moving, so it is retried with backoff without using an attempt, up
    to ``max_contentions`` times (a guard against a bug that never lets it commit)."""
    max_contentions: int = 100

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.base_delay_s < 0 or self.max_delay_s < 0:
            raise ValueError("delays must be >= 0")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be within [0, 1]")

    def delay_s(self, attempt: int, rand: float) -> float:
        """Seconds before attempt ``attempt + 1``; ``rand`` is uniform in [0, 1)."""
        exponent = max(0, attempt - 1)
        try:
            raw = self.base_delay_s * self.multiplier**exponent
        except OverflowError:
            # a consumer that retries forever reaches attempt ~1,000 after hours at the cap
            return self.max_delay_s
        jittered = raw * (1.0 + self.jitter * (2.0 * rand - 1.0))
        return max(0.0, min(self.max_delay_s, jittered))

    def exhausted(self, attempt: int) -> bool:
        """True when attempt ``attempt`` was the last one allowed."""
        return attempt >= self.max_attempts and self.on_exhausted is OnExhausted.DEAD_LETTER

    def is_outage(self, exc: BaseException) -> bool:
        """True when ``exc`` says a backend is unreachable (see ``outages``)."""
        return type(exc) in self.outages

    def is_contention(self, exc: BaseException) -> bool:
        """True when ``exc`` says the message lost to other writers (see ``contention``)."""
        return isinstance(exc, self.contention)

    def non_retryable_reason(self, exc: BaseException) -> str | None:
        """The DLQ reason when ``exc`` must not be retried, else ``None``."""
        for kind, reason in self.non_retryable.items():
            if isinstance(exc, kind):
                return reason
        return None


def retry_policy(settings: Settings, **overrides: object) -> RetryPolicy:
    """The error-retry policy from ``settings`` (``retry_*``)."""
    base = RetryPolicy(
        max_attempts=settings.retry_max_attempts,
        base_delay_s=settings.retry_base_delay_s,
        max_delay_s=settings.retry_max_delay_s,
        jitter=settings.retry_jitter,
    )
    return _replace(base, overrides)


def park_policy(settings: Settings, **overrides: object) -> RetryPolicy:
    """The park policy: ``park_max_attempts`` parks, then ``precondition_timeout``."""
    base = RetryPolicy(
        max_attempts=settings.park_max_attempts,
        base_delay_s=settings.retry_base_delay_s,
        max_delay_s=settings.retry_max_delay_s,
        jitter=settings.retry_jitter,
        exhausted_reason=DlqReason.PRECONDITION_TIMEOUT.value,
    )
    return _replace(base, overrides)


def _replace(policy: RetryPolicy, overrides: Mapping[str, object]) -> RetryPolicy:
    if not overrides:
        return policy
    return replace(policy, **overrides)  # type: ignore[arg-type]
