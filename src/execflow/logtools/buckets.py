"""Time buckets that fit a run: an 80 s run gets 5 s buckets, a day gets hours.

The statistics count outcome lines per second (``YYYY-MM-DDTHH:MM:SS``); the report
sums them into at most ``MAX_BUCKETS`` buckets of a round width (1, 2, 5, 10, 15, 30 s,
1, 2, 5, 10, 15, 30 min, 1, 2, 3, 6, 12 h, 1 day), aligned on multiples of that width.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = ["MAX_BUCKETS", "TimeBuckets", "fit_buckets"]

MAX_BUCKETS = 30
_WIDTHS_S = (
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800,
    3600, 7200, 10800, 21600, 43200, 86400,
)  # fmt: skip
_SECOND = "%Y-%m-%dT%H:%M:%S"


def _epoch(second: str) -> int:
    return int(datetime.strptime(second, _SECOND).replace(tzinfo=UTC).timestamp())


@dataclass(frozen=True, slots=True)
class TimeBuckets:
    """``count`` buckets of ``width_s`` seconds from ``start`` (epoch seconds, aligned)."""

    start: int
    width_s: int
    count: int

    def sums(self, per_second: Counter[str]) -> list[float]:
        """``per_second`` counts summed per bucket (keys outside the range are clamped)."""
        values = [0.0] * self.count
        for second, n in per_second.items():
            index = (_epoch(second) - self.start) // self.width_s
            values[min(max(index, 0), self.count - 1)] += n
        return values

    def labels(self) -> list[str]:
        """The start of each bucket: the date once, then the time of day (UTC)."""
        spans_days = self._day(0) != self._day(self.count - 1)
        out = []
        for i in range(self.count):
            moment = datetime.fromtimestamp(self.start + i * self.width_s, UTC)
            if self.width_s >= 86400:
                out.append(moment.strftime("%Y-%m-%d"))
            elif spans_days:
                out.append(moment.strftime("%m-%d %H:%M"))
            else:
                out.append(moment.strftime("%H:%M:%S" if self.width_s < 60 else "%H:%M"))
        return out

    def _day(self, index: int) -> str:
        moment = datetime.fromtimestamp(self.start + index * self.width_s, UTC)
        return moment.strftime("%Y-%m-%d")

    def day(self) -> str:
        """The date of the first bucket (UTC)."""
        return self._day(0)

    def width_text(self) -> str:
        """``5 s``, ``10 min``, ``1 h``, ``1 day``."""
        if self.width_s < 60:
            return f"{self.width_s} s"
        if self.width_s < 3600:
            return f"{self.width_s // 60} min"
        if self.width_s < 86400:
            return f"{self.width_s // 3600} h"
        return f"{timedelta(seconds=self.width_s).days} day"


def fit_buckets(seconds: Iterable[str], max_buckets: int = MAX_BUCKETS) -> TimeBuckets | None:
    """The finest round width that covers the seconds seen in at most ``max_buckets``."""
    keys = list(seconds)
    if not keys:
        return None
    first, last = _epoch(min(keys)), _epoch(max(keys))
    for width in _WIDTHS_S:
        start = first - first % width
        count = (last - start) // width + 1
        if count <= max_buckets:
            return TimeBuckets(start, width, count)
    width = _WIDTHS_S[-1]
    start = first - first % width
    return TimeBuckets(start, width, (last - start) // width + 1)
