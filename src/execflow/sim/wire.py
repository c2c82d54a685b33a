"""How the simulated LP writes reports: JSON with names, JSON with FIX tags, raw FIX.

Three encodings of the same report exercise the normaliser
(``execflow.domain.reports.parse_message``); ``malformed`` produces messages that must
end in the DLQ as ``malformed_report``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import orjson

from execflow.domain.enums import ReportStatus, Side
from execflow.domain.messages import ExecutionReport

__all__ = ["WireFormat", "encode_report", "fix_time", "malformed"]


class WireFormat(StrEnum):
    """Encodings the simulated LP uses, chosen per report."""

    JSON_NAMES = "json_names"
    JSON_TAGS = "json_tags"
    FIX = "fix"


_STATUS_CODE = {
    ReportStatus.EXECUTED: ("2", "F"),
    ReportStatus.PARTIALLY_FILLED: ("1", "F"),
    ReportStatus.PENDING: ("0", "0"),
    ReportStatus.MODIFY: ("5", "5"),
    ReportStatus.CANCELLED: ("4", "4"),
    ReportStatus.REJECTED: ("8", "8"),
}
_SIDE_CODE = {Side.BUY: "1", Side.SELL: "2"}

# (FIX tag, ExecutionReport attribute), in the order a FIX engine writes them
_TAGGED = (
    ("11", "lifecycle_id"),
    ("41", "orig_lifecycle_id"),
    ("37", "lp_order_id"),
    ("17", "exec_id"),
    ("6", "avg_px"),
    ("14", "cum_qty"),
    ("31", "last_px"),
    ("32", "last_qty"),
    ("151", "leaves_qty"),
    ("44", "price"),
    ("99", "stop_px"),
    ("55", "symbol"),
    ("58", "reason"),
)


def fix_time(moment: datetime) -> str:
    """FIX UTCTimestamp with microseconds: ``YYYYMMDD-HH:MM:SS.ffffff``."""
    return moment.strftime("%Y%m%d-%H:%M:%S.%f")


def _text(value: object) -> str:
    return str(value) if not isinstance(value, Decimal) else format(value, "f")


def _tag_fields(report: ExecutionReport) -> list[tuple[str, str]]:
    status, exec_type = _STATUS_CODE[report.ord_status]
    fields: list[tuple[str, str]] = [("35", "8")]
    for tag, attr in _TAGGED:
        value = getattr(report, attr)
        if value is not None:
            fields.append((tag, _text(value)))
    fields.append(("39", status))
    fields.append(("150", exec_type))
    if report.side is not None:
        fields.append(("54", _SIDE_CODE[report.side]))
    if report.transact_time is not None:
        fields.append(("60", fix_time(report.transact_time)))
    return fields


def _json_names(report: ExecutionReport) -> bytes:
    data: dict[str, Any] = {"type": "execution_report", "ord_status": report.ord_status.value}
    for _tag, attr in _TAGGED:
        value = getattr(report, attr)
        if value is not None:
            data[attr] = _text(value)
    if report.side is not None:
        data["side"] = report.side.value
    if report.transact_time is not None:
        data["transact_time"] = report.transact_time.isoformat()
    data["provider"] = report.provider
    return orjson.dumps(data)


def _json_tags(report: ExecutionReport) -> bytes:
    data: dict[str, Any] = dict(_tag_fields(report))
    data["provider"] = report.provider
    return orjson.dumps(data)


def _fix(report: ExecutionReport, seq: int) -> bytes:
    body_fields = [
        ("35", "8"),
        ("49", report.provider.upper() or "LP"),
        ("56", "EXECFLOW"),
        ("34", str(seq)),
        *[f for f in _tag_fields(report) if f[0] != "35"],
    ]
    body = "".join(f"{tag}={value}\x01" for tag, value in body_fields)
    head = f"8=FIX.4.4\x019={len(body.encode())}\x01"
    message = head + body
    checksum = sum(message.encode()) % 256
    return (message + f"10={checksum:03d}\x01").replace("\x01", "|").encode()


def encode_report(report: ExecutionReport, fmt: WireFormat, seq: int = 1) -> bytes:
    """The bytes of ``report`` in the wire format ``fmt``."""
    if fmt is WireFormat.JSON_NAMES:
        return _json_names(report)
    if fmt is WireFormat.JSON_TAGS:
        return _json_tags(report)
    return _fix(report, seq)


def _truncated(report: ExecutionReport, _rng: random.Random) -> bytes:
    whole = _json_names(report)
    return whole[: max(1, len(whole) // 2)]


def _bad_checksum(report: ExecutionReport, _rng: random.Random) -> bytes:
    good = _fix(report, 1).decode()
    head, _, tail = good.rpartition("10=")
    wrong = (int(tail.strip("|")) + 1) % 256
    return f"{head}10={wrong:03d}|".encode()


def _no_exec_id(report: ExecutionReport, _rng: random.Random) -> bytes:
    # A report without ExecID is given an id derived from its content; a LastQty-only
    # fill is the one kind that cannot be, so that is the malformed variant.
    data = orjson.loads(_json_names(report))
    data.pop("exec_id", None)
    data.pop("cum_qty", None)
    data.pop("avg_px", None)
    data["ord_status"] = ReportStatus.PARTIALLY_FILLED.value
    data["last_qty"] = data.get("last_qty") or "0.01"
    data["last_px"] = data.get("last_px") or "1"
    return orjson.dumps(data)


def _bad_status(report: ExecutionReport, _rng: random.Random) -> bytes:
    data = dict(_tag_fields(report))
    data["39"] = "Z"
    data["150"] = "Z"
    return orjson.dumps(data)


def _negative_price(report: ExecutionReport, _rng: random.Random) -> bytes:
    data = orjson.loads(_json_names(report))
    data["avg_px"] = "-1.5"
    data["ord_status"] = ReportStatus.EXECUTED.value
    data["cum_qty"] = data.get("cum_qty") or "0.01"
    return orjson.dumps(data)


def _not_a_message(_report: ExecutionReport, rng: random.Random) -> bytes:
    return bytes(rng.getrandbits(8) | 0x80 for _ in range(12))


_MALFORMED: tuple[tuple[str, Callable[[ExecutionReport, random.Random], bytes]], ...] = (
    ("truncated_json", _truncated),
    ("bad_checksum", _bad_checksum),
    ("missing_exec_id", _no_exec_id),
    ("unknown_status", _bad_status),
    ("negative_price", _negative_price),
    ("not_utf8", _not_a_message),
)


def malformed(report: ExecutionReport, rng: random.Random) -> tuple[str, bytes]:
    """A broken message derived from ``report``: (variant name, bytes)."""
    name, build = _MALFORMED[rng.randrange(len(_MALFORMED))]
    return name, build(report, rng)
