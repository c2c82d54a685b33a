"""Normalisation of LP messages into ``ExecutionReport`` (DESIGN §2).

Accepted inputs: a JSON object with named fields, aliases or FIX tag numbers as keys;
a raw FIX 4.4 tag=value message (SOH or ``|`` separated); or the raw bytes of either.
Nothing is guessed: an invalid value raises ``ReportError(field, reason)``. Messages
that are valid but not execution reports (heartbeats, acks, logons) come back as
``NonExecutionMessage`` so the dispatcher can count and ignore them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import fields, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from execflow.domain.enums import ReportStatus, Side
from execflow.domain.messages import EXECUTION_REPORT, ExecutionReport, NonExecutionMessage
from execflow.errors import ReportError

__all__ = ["DERIVED_EXEC_ID_PREFIX", "Normalised", "normalise", "parse_fix", "parse_message"]

Normalised = ExecutionReport | NonExecutionMessage

DERIVED_EXEC_ID_PREFIX = "derived-"
"""Prefix of the exec_id given to a report that came without ExecID (17)."""

# canonical field -> accepted keys (compared lower-case); FIX tag numbers included
_ALIASES: dict[str, tuple[str, ...]] = {
    "msg_type": ("type", "msg_type", "msgtype", "35"),
    "lifecycle_id": ("lifecycle_id", "order_id", "clordid", "cl_ord_id", "11"),
    "orig_lifecycle_id": ("orig_lifecycle_id", "origclordid", "orig_clordid", "41"),
    "exec_id": ("exec_id", "execid", "17"),
    "lp_order_id": ("lp_order_id", "37"),
    "ord_status": ("ord_status", "ordstatus", "status", "39"),
    "exec_type": ("exec_type", "exectype", "150"),
    "avg_px": ("avg_px", "avgpx", "6"),
    "cum_qty": ("cum_qty", "cumqty", "14"),
    "last_px": ("last_px", "lastpx", "31"),
    "last_qty": ("last_qty", "lastqty", "lastshares", "32"),
    "leaves_qty": ("leaves_qty", "leavesqty", "151"),
    "price": ("price", "44"),
    "stop_px": ("stop_px", "stoppx", "99"),
    "side": ("side", "54"),
    "symbol": ("symbol", "55"),
    "reason": ("reason", "text", "58"),
    "ord_rej_reason": ("ord_rej_reason", "ordrejreason", "103"),
    "transact_time": ("transact_time", "transacttime", "60"),
    "provider": ("provider",),
}
_KEY_TO_FIELD = {alias: name for name, aliases in _ALIASES.items() for alias in aliases}

_SIDE_CODES = {"1": Side.BUY, "2": Side.SELL}
_SIDE_NAMES = {"BUY": Side.BUY, "SELL": Side.SELL}

_STATUS_CODES: dict[str, ReportStatus] = {
    "2": ReportStatus.EXECUTED,
    "F": ReportStatus.EXECUTED,
    "1": ReportStatus.PARTIALLY_FILLED,
    "0": ReportStatus.PENDING,
    "A": ReportStatus.PENDING,
    "5": ReportStatus.MODIFY,
    "4": ReportStatus.CANCELLED,
    "C": ReportStatus.CANCELLED,
    "8": ReportStatus.REJECTED,
}
_STATUS_NAMES: dict[str, ReportStatus] = {
    **{s.value: s for s in ReportStatus},
    "FILLED": ReportStatus.EXECUTED,
    "NEW": ReportStatus.PENDING,
    "REPLACED": ReportStatus.MODIFY,
    "CANCELED": ReportStatus.CANCELLED,
    "EXPIRED": ReportStatus.CANCELLED,
}

_EXECUTION_TYPES = {"8", "execution", "execution_report", "executionreport"}
# session-level and acknowledgement messages: valid, counted, never routed
_NON_EXECUTION_TYPES = {
    "0": "heartbeat",
    "1": "test_request",
    "2": "resend_request",
    "3": "session_reject",
    "4": "sequence_reset",
    "5": "logout",
    "A": "logon",
    **{
        name: name
        for name in (
            "heartbeat",
            "ack",
            "test_request",
            "resend_request",
            "session_reject",
            "sequence_reset",
            "logout",
            "logon",
        )
    },
}

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_MAX_NUMBER_LEN = 32
_MAX_TEXT_LEN = 256
_FIX_TIME = re.compile(r"(\d{8})-(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?")
_FIX_TAG = re.compile(r"\d{1,5}")


class _JsonNumber(str):
    """A JSON number kept as its source text, so it is parsed exactly like a string."""

    __slots__ = ()


def parse_message(raw: bytes | str, provider: str = "") -> Normalised:
    """Normalise raw bytes or text: a JSON object or a FIX tag=value message.

    Every way the input can be wrong is a ``ReportError``, never another exception: a
    message is malformed on its first attempt, so it is never retried.
    """
    try:
        return _parse(raw, provider)
    except RecursionError as exc:  # deeply nested JSON: the decoder's stack gave out
        raise ReportError("message", "nested too deeply") from exc
    except (ValueError, TypeError, ArithmeticError, OverflowError) as exc:
        # decimal.InvalidOperation is an ArithmeticError; UnicodeError a ValueError
        raise ReportError("message", f"{type(exc).__name__}: {str(exc)[:100]}") from exc


def _parse(raw: bytes | str, provider: str) -> Normalised:
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ReportError("message", "not valid utf-8") from exc
    else:
        text = raw
    stripped = text.strip()
    if not stripped:
        raise ReportError("message", "empty message")
    if stripped.startswith("{"):
        return normalise(_load_json(stripped), provider)
    if "=" in stripped:
        return parse_fix(stripped, provider)
    raise ReportError("message", "neither a JSON object nor a FIX message")


def _load_json(text: str) -> Mapping[str, Any]:
    def no_constants(name: str) -> Any:
        raise ReportError("message", f"non-finite number {name}")

    try:
        data = json.loads(
            text, parse_float=_JsonNumber, parse_int=_JsonNumber, parse_constant=no_constants
        )
    except ValueError as exc:
        raise ReportError("message", f"invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ReportError("message", "JSON message is not an object")
    return data


def parse_fix(text: str, provider: str = "") -> Normalised:
    """Normalise a FIX 4.4 tag=value message (SOH or ``|`` separated)."""
    separator = "\x01" if "\x01" in text else "|"
    fields: dict[str, str] = {}
    for part in text.strip(separator).split(separator):
        tag, eq, value = part.partition("=")
        if not eq or not _FIX_TAG.fullmatch(tag):
            raise ReportError("message", f"malformed FIX field {part[:20]!r}")
        if value == "":
            raise ReportError(tag, "empty value")
        if tag in fields and tag in _KEY_TO_FIELD:
            # repeating groups may repeat other tags; the ones we read must be unique
            raise ReportError(tag, "duplicate tag")
        fields.setdefault(tag, value)
    _check_checksum(text, separator, fields)
    if "35" not in fields:
        raise ReportError("35", "missing")
    return normalise(fields, provider)


def _check_checksum(text: str, separator: str, fields: Mapping[str, str]) -> None:
    if "10" not in fields:
        return
    marker = f"{separator}10="
    cut = text.rfind(marker)
    if cut < 0:
        raise ReportError("10", "checksum is not the last field")
    body = text[: cut + 1].replace(separator, "\x01")
    expected = sum(body.encode("utf-8")) % 256
    if not fields["10"].isdigit() or int(fields["10"]) != expected:
        raise ReportError("10", f"checksum mismatch (expected {expected:03d})")


def normalise(data: Mapping[str, Any], provider: str = "") -> Normalised:
    """Normalise a message given as an object with named fields, aliases or tag numbers."""
    values = _collect(data)
    msg_type = _text(values, "msg_type")
    if msg_type is not None and msg_type.lower() not in _EXECUTION_TYPES:
        admin = _NON_EXECUTION_TYPES.get(msg_type) or _NON_EXECUTION_TYPES.get(msg_type.lower())
        if admin is None:
            raise ReportError("type", f"unsupported message type {msg_type!r}")
        return NonExecutionMessage(admin, _text(values, "provider") or provider)
    exec_id = _text(values, "exec_id")
    exec_type = _text(values, "exec_type")
    status = _status(values, exec_type)
    report = ExecutionReport(
        exec_id=exec_id or "",
        ord_status=status,
        lifecycle_id=_text(values, "lifecycle_id"),
        orig_lifecycle_id=_text(values, "orig_lifecycle_id"),
        lp_order_id=_text(values, "lp_order_id"),
        exec_type=exec_type,
        avg_px=_decimal(values, "avg_px"),
        cum_qty=_decimal(values, "cum_qty"),
        last_px=_decimal(values, "last_px"),
        last_qty=_decimal(values, "last_qty"),
        leaves_qty=_decimal(values, "leaves_qty"),
        price=_level(values, "price"),
        stop_px=_level(values, "stop_px"),
        side=_side(values),
        symbol=_text(values, "symbol"),
        reason=_reason(values),
        transact_time=_time(values),
        provider=_text(values, "provider") or provider,
        msg_type=EXECUTION_REPORT,
    )
    _check_fill(report)
    if exec_id is None:
        return _with_derived_exec_id(report)
    return report


def _with_derived_exec_id(report: ExecutionReport) -> ExecutionReport:
    """A report without ExecID (17) gets an id derived from everything it says.

    Refusing it would leave its order waiting forever (a reject without ExecID would
    hold the reservation). The same message delivered twice derives the same id, so the
    ledger still applies it once. A LastQty-only fill is the exception: two different
    partial fills of the same size and price would derive one id, so without ExecID
    there is no way to count each exactly once, and it is refused.
    """
    if report.ord_status.is_fill and report.cum_qty is None:
        raise ReportError("exec_id", "missing on a fill without cum_qty (14)")
    said = "\x1f".join(
        f"{field.name}={getattr(report, field.name)}"
        for field in fields(report)
        if field.name != "exec_id"
    )
    digest = hashlib.sha256(said.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return replace(report, exec_id=f"{DERIVED_EXEC_ID_PREFIX}{digest}")


def _collect(data: Mapping[str, Any]) -> dict[str, Any]:
    """Canonical field -> value; aliases that disagree are an error."""
    if not isinstance(data, Mapping):
        raise ReportError("message", "not an object")
    out: dict[str, Any] = {}
    for key, value in data.items():
        # the aliases are lower-case: a key found as it is needs no lower-casing
        name = _KEY_TO_FIELD.get(key) if key.__class__ is str else None
        if name is None:
            name = _KEY_TO_FIELD.get(str(key).lower())
        if name is None or value is None:
            continue
        if name in out and _as_text(out[name], name) != _as_text(value, name):
            raise ReportError(name, "conflicting values for aliases")
        out[name] = value
    return out


def _as_text(value: Any, name: str) -> str:
    if value.__class__ is str:  # the common case first: a plain str is its own text
        return value
    if isinstance(value, bool):
        raise ReportError(name, "boolean not allowed")
    if isinstance(value, float):
        raise ReportError(name, "binary float not allowed; send decimals as strings")
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ReportError(name, "non-finite number")
        return str(value)
    if isinstance(value, str | int):
        return str(value)
    raise ReportError(name, f"unsupported value type {type(value).__name__}")


def _text(values: Mapping[str, Any], name: str) -> str | None:
    # Control characters are kept: text from outside is escaped wherever it is shown or
    # logged (DESIGN §11), and refusing it would leave the report's order waiting.
    if name not in values:
        return None
    text = _as_text(values[name], name)
    if not text.strip():
        raise ReportError(name, "empty value")
    if len(text) > _MAX_TEXT_LEN:
        raise ReportError(name, "value too long")
    return text


def _free_text(values: Mapping[str, Any], name: str) -> str | None:
    """Like ``_text``, but an over-long value is cut, never a reason to refuse."""
    if name not in values:
        return None
    text = _as_text(values[name], name)
    if not text.strip():
        return None
    if len(text) > _MAX_TEXT_LEN:
        return text[: _MAX_TEXT_LEN - 1] + "\u2026"
    return text


def _decimal(values: Mapping[str, Any], name: str) -> Decimal | None:
    raw = values.get(name)
    if raw is None:
        return None
    if isinstance(raw, Decimal) and not isinstance(raw, bool):
        value = raw
        if not value.is_finite():
            raise ReportError(name, "non-finite number")
    else:
        text = _as_text(raw, name).strip()
        if len(text) > _MAX_NUMBER_LEN or not _NUMBER.fullmatch(text):
            raise ReportError(name, f"not a plain decimal number: {text[:20]!r}")
        value = Decimal(text)
    if value < 0:
        raise ReportError(name, "negative value")
    return value


def _level(values: Mapping[str, Any], name: str) -> Decimal | None:
    value = _decimal(values, name)
    # FIX sends Price=0 / StopPx=0 for "no price" (market orders)
    return None if value is None or value == 0 else value


def _status(values: Mapping[str, Any], exec_type: str | None) -> ReportStatus:
    raw = _text(values, "ord_status")
    field = "ord_status"
    if raw is None:
        raw, field = exec_type, "exec_type"
    if raw is None:
        raise ReportError("ord_status", "missing (neither OrdStatus 39 nor ExecType 150)")
    status = _STATUS_CODES.get(raw) or _STATUS_NAMES.get(raw.upper())
    if status is None:
        raise ReportError(field, f"unsupported status {raw!r}")
    return status


def _side(values: Mapping[str, Any]) -> Side | None:
    raw = _text(values, "side")
    if raw is None:
        return None
    side = _SIDE_CODES.get(raw) or _SIDE_NAMES.get(raw.upper())
    if side is None:
        raise ReportError("side", f"unsupported side {raw!r}")
    return side


def _reason(values: Mapping[str, Any]) -> str | None:
    text = _free_text(values, "reason")
    code = _free_text(values, "ord_rej_reason")
    if text is not None:
        return text
    return None if code is None else f"ord_rej_reason={code}"


def _time(values: Mapping[str, Any]) -> datetime | None:
    raw = _text(values, "transact_time")
    if raw is None:
        return None
    match = _FIX_TIME.fullmatch(raw)
    try:
        if match:
            day, hh, mm, ss, frac = match.groups()
            # datetime keeps microseconds: nanosecond digits beyond them are dropped
            micros = int((frac or "0").ljust(6, "0")[:6])
            # the fields are fixed-width, so the constructor checks what strptime would
            # (a tenth of its cost; every FIX report is parsed twice on the gateway path)
            return datetime(
                int(day[:4]), int(day[4:6]), int(day[6:]), int(hh), int(mm), int(ss), micros, UTC
            )
        parsed = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise ReportError("transact_time", f"not a timestamp: {raw[:40]!r}") from exc
    # TransactTime is UTC by definition, so a timestamp without offset is UTC
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _check_fill(report: ExecutionReport) -> None:
    """Fill reports must say how much at what price; nothing is inferred beyond that."""
    if not report.ord_status.is_fill:
        return
    qty = report.cum_qty if report.cum_qty is not None else report.last_qty
    if qty is None or qty == 0:
        raise ReportError("cum_qty", "fill without a quantity (cum_qty 14 or last_qty 32)")
    px = report.avg_px if report.avg_px is not None else report.last_px
    if px is None or px == 0:
        raise ReportError("avg_px", "fill without a price (avg_px 6 or last_px 31)")
    if (
        report.cum_qty is not None
        and report.last_qty is not None
        and report.last_qty > report.cum_qty
    ):
        raise ReportError("last_qty", "last_qty exceeds cum_qty")
