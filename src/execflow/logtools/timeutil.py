"""Timestamps as the log lines write them: ``2026-11-29T12:47:00.123456Z`` (UTC)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["format_ts", "normalize_bound", "parse_ts", "shift_ts"]

_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def parse_ts(ts: str) -> datetime:
    """A log timestamp (or any ISO 8601 time; naive means UTC) as an aware datetime."""
    text = ts.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def format_ts(moment: datetime) -> str:
    """An aware datetime in the log lines' format."""
    return moment.astimezone(UTC).strftime(_FORMAT)


def normalize_bound(text: str | None) -> str | None:
    """A ``--since`` / ``--until`` value in the lines' format, so bounds compare as strings."""
    if text is None:
        return None
    return format_ts(parse_ts(text))


def shift_ts(ts: str, seconds: float) -> str:
    """``ts`` moved by ``seconds``."""
    return format_ts(parse_ts(ts) + timedelta(seconds=seconds))
