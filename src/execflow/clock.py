"""Injected time and ids: components take a ``Clock`` and an ``IdGenerator``; tests use fakes."""

from __future__ import annotations

import itertools
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["Clock", "FakeClock", "IdGenerator", "SequentialIds", "SystemClock", "UuidIds"]


class Clock(Protocol):
    """Wall time (UTC) and a monotonic counter."""

    def now(self) -> datetime:
        """Current UTC time, timezone-aware."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never goes backwards."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        """Current UTC time."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._mono = 0.0

    def now(self) -> datetime:
        """The fake current time."""
        return self._now

    def monotonic(self) -> float:
        """The fake monotonic time."""
        return self._mono

    def advance(self, seconds: float) -> None:
        """Move both clocks forward."""
        self._now += timedelta(seconds=seconds)
        self._mono += seconds


class IdGenerator(Protocol):
    """Makes unique string ids."""

    def new_id(self) -> str:
        """A new unique id."""
        ...


class UuidIds:
    """Random 128-bit ids, hex."""

    def new_id(self) -> str:
        """A new uuid4 in hex."""
        return uuid.uuid4().hex


class SequentialIds:
    """Deterministic ids for tests: ``prefix1``, ``prefix2``, ..."""

    def __init__(self, prefix: str = "id") -> None:
        self._prefix = prefix
        self._counter = itertools.count(1)

    def new_id(self) -> str:
        """The next id of the sequence."""
        return f"{self._prefix}{next(self._counter)}"
