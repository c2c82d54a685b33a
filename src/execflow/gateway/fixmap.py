"""FIX 4.4 <-> execflow, as plain data: the gateway's (and the FIX simulator's) one mapping.

Pure: no engine, no I/O. The engine (QuickFIX) owns the session layer; this module only
says which tags a provider request becomes and what an LP message means for the
pipeline. Messages are handled as ordered ``(tag, value)`` lists, the shape of the wire,
so repeating groups (market data entries) keep their order.

Outbound: OPEN / CLOSE / PLACE_PENDING / PLACE_SL / PLACE_TP are NewOrderSingle (D),
MODIFY_PENDING is OrderCancelReplaceRequest (G), CANCEL_* is OrderCancelRequest (F).
ClOrdID (11) is the lifecycle id, SecondaryClOrdID (526) the client order id and
PositionEffect (77) says whether the order opens or closes, so the request kind can be
read back from the wire (the FIX simulator does).

Inbound: ExecutionReport (8) passes through by tag; OrderCancelReject (9),
BusinessMessageReject (j) and a session Reject (3) of one of our requests become a
REJECTED report for the lifecycle id they answer, with a stable exec_id so that a
re-sent copy is applied once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from execflow.domain.enums import LpOrderType, ReportStatus, RequestKind, Side
from execflow.domain.messages import ExecutionReport, ProviderRequest

__all__ = [
    "CANCEL",
    "CANCEL_REJECT",
    "NEW_ORDER",
    "REPLACE",
    "REPORT_TYPES",
    "TEXT_MAX_CHARS",
    "Fields",
    "QuoteUpdate",
    "SentRef",
    "cancel_reject_fields",
    "first",
    "market_data_request",
    "msg_type_of",
    "parse_fields",
    "quote_updates",
    "raw_field",
    "report_document",
    "report_fields",
    "request_fields",
    "request_from_fields",
]

Fields = list[tuple[int, str]]
"""An ordered FIX body: ``[(tag, value), ...]``; a tag may repeat inside groups."""

NEW_ORDER = "D"
CANCEL = "F"
REPLACE = "G"
EXECUTION_REPORT = "8"
CANCEL_REJECT = "9"
BUSINESS_REJECT = "j"
SESSION_REJECT = "3"
SNAPSHOT = "W"
INCREMENTAL = "X"
REPORT_TYPES = frozenset({EXECUTION_REPORT, CANCEL_REJECT, BUSINESS_REJECT})
"""Application messages that become reports (a session Reject is an admin message)."""

_SIDE = {Side.BUY: "1", Side.SELL: "2"}
_SIDE_BACK = {"1": Side.BUY, "2": Side.SELL}
_ORD_TYPE = {LpOrderType.MARKET: "1", LpOrderType.LIMIT: "2", LpOrderType.STOP: "3"}
_ORD_TYPE_BACK = {v: k for k, v in _ORD_TYPE.items()}
_CLOSES = frozenset({RequestKind.CLOSE, RequestKind.PLACE_SL, RequestKind.PLACE_TP})
_CANCELS = frozenset({RequestKind.CANCEL_PENDING, RequestKind.CANCEL_SL, RequestKind.CANCEL_TP})
# TimeInForce: a market order fills now or not at all; resting orders stay until cancelled
_TIF_IOC = "3"
_TIF_GTC = "1"

TEXT_MAX_CHARS = 1024
"""Text (58) longer than this is cut before the report is published."""

# ExecutionReport tags the normaliser (execflow.domain.reports) reads; the rest is dropped
_REPORT_TAGS = (11, 41, 37, 17, 39, 150, 6, 14, 31, 32, 151, 44, 99, 54, 55, 58, 103, 60)
_REPORT_KEYS = tuple((tag, str(tag)) for tag in _REPORT_TAGS)  # (tag, its key in a report)


def _decimal(value: Decimal) -> str:
    return format(value, "f")


def fix_time(moment: datetime) -> str:
    """FIX UTCTimestamp with milliseconds (what every FIX 4.4 venue accepts)."""
    return moment.strftime("%Y%m%d-%H:%M:%S.%f")[:-3]


def request_fields(request: ProviderRequest, now: datetime) -> tuple[str, Fields]:
    """The MsgType and body of the FIX message a provider request becomes."""
    kind = request.kind
    body: Fields = [(11, request.lifecycle_id)]
    if kind in _CANCELS or kind is RequestKind.MODIFY_PENDING:
        body.append((41, request.orig_lifecycle_id or ""))
    body.append((526, request.order_id))
    body.append((55, request.symbol))
    body.append((54, _SIDE[request.side]))
    body.append((60, fix_time(now)))
    body.append((38, _decimal(request.qty)))
    if kind in _CANCELS:
        return CANCEL, body
    body.append((40, _ORD_TYPE[request.order_type]))
    if request.price is not None and request.order_type is LpOrderType.LIMIT:
        body.append((44, _decimal(request.price)))
    if request.stop_px is not None and request.order_type is LpOrderType.STOP:
        body.append((99, _decimal(request.stop_px)))
    market = request.order_type is LpOrderType.MARKET
    body.append((59, _TIF_IOC if market else _TIF_GTC))
    body.append((21, "1"))  # HandlInst: automated, no broker intervention
    if kind is RequestKind.MODIFY_PENDING:
        return REPLACE, body
    body.append((77, "C" if kind in _CLOSES else "O"))
    return NEW_ORDER, body


_STATUS_CODE = {
    ReportStatus.EXECUTED: ("2", "F"),
    ReportStatus.PARTIALLY_FILLED: ("1", "F"),
    ReportStatus.PENDING: ("0", "0"),
    ReportStatus.MODIFY: ("5", "5"),
    ReportStatus.CANCELLED: ("4", "4"),
    ReportStatus.REJECTED: ("8", "8"),
}


def report_fields(report: ExecutionReport) -> Fields:
    """An ExecutionReport (8) body with every field FIX 4.4 requires (the LP's side).

    A reject has no LP order: OrderID is ``NONE``, as venues send it.
    """
    status, exec_type = _STATUS_CODE[report.ord_status]
    if report.ord_status is ReportStatus.MODIFY:
        # FIX 4.4 has no OrdStatus "Replaced": ExecType 5 says it, OrdStatus is the order's
        status = "0"
    zero = "0"
    body: Fields = [(37, report.lp_order_id or "NONE"), (11, report.lifecycle_id or "")]
    if report.orig_lifecycle_id:
        body.append((41, report.orig_lifecycle_id))
    body += [(17, report.exec_id), (150, exec_type), (39, status)]
    body.append((55, report.symbol or ""))
    body.append((54, _SIDE[report.side] if report.side is not None else "1"))
    if report.price is not None:
        body.append((44, _decimal(report.price)))
    if report.stop_px is not None:
        body.append((99, _decimal(report.stop_px)))
    if report.last_qty is not None:
        body.append((32, _decimal(report.last_qty)))
    if report.last_px is not None:
        body.append((31, _decimal(report.last_px)))
    body.append((151, _decimal(report.leaves_qty) if report.leaves_qty is not None else zero))
    body.append((14, _decimal(report.cum_qty) if report.cum_qty is not None else zero))
    body.append((6, _decimal(report.avg_px) if report.avg_px is not None else zero))
    if report.transact_time is not None:
        body.append((60, fix_time(report.transact_time)))
    if report.reason:
        body.append((58, report.reason))
    return body


def cancel_reject_fields(report: ExecutionReport, response_to: str) -> Fields:
    """An OrderCancelReject (9) body for a refused cancel (F) or replace (G) (the LP's side)."""
    unknown = report.lp_order_id is None
    return [
        (37, report.lp_order_id or "NONE"),
        (11, report.lifecycle_id or ""),
        (41, report.orig_lifecycle_id or "NONE"),
        (39, "8" if unknown else "2"),
        (434, "1" if response_to == CANCEL else "2"),
        (102, "1" if unknown else "0"),  # unknown order / too late
        (58, report.reason or "refused"),
    ]


def first(fields: Iterable[tuple[int, str]], tag: int) -> str | None:
    """The first value of ``tag``, or None."""
    for key, value in fields:
        if key == tag:
            return value
    return None


def request_from_fields(msg_type: str, fields: Fields) -> ProviderRequest:
    """Read a provider request back from D / F / G (the FIX simulator's side).

    Raises ``ValueError`` naming the tag when a field it needs is missing or invalid.
    """
    tags = dict(fields)

    def need(tag: int) -> str:
        value = tags.get(tag)
        if not value:
            raise ValueError(f"tag {tag} missing")
        return value

    side = _SIDE_BACK.get(need(54))
    if side is None:
        raise ValueError(f"tag 54: unsupported side {tags[54]!r}")
    qty = Decimal(need(38))
    orig = tags.get(41)
    if msg_type == CANCEL:
        kind, order_type = RequestKind.CANCEL_PENDING, LpOrderType.MARKET
    else:
        found = _ORD_TYPE_BACK.get(need(40))
        if found is None:
            raise ValueError(f"tag 40: unsupported order type {tags[40]!r}")
        order_type = found
        kind = _kind_of(msg_type, order_type, tags.get(77))
    price = Decimal(tags[44]) if tags.get(44) else None
    stop_px = Decimal(tags[99]) if tags.get(99) else None
    return ProviderRequest(
        lifecycle_id=need(11),
        kind=kind,
        account_id=tags.get(1, ""),
        order_id=tags.get(526) or need(11),
        symbol=need(55),
        side=side,
        order_type=order_type,
        qty=qty,
        orig_lifecycle_id=orig,
        price=price,
        stop_px=stop_px,
    )


def _kind_of(msg_type: str, order_type: LpOrderType, effect: str | None) -> RequestKind:
    if msg_type == REPLACE:
        return RequestKind.MODIFY_PENDING
    if msg_type != NEW_ORDER:
        raise ValueError(f"tag 35: not an order message {msg_type!r}")
    closes = effect == "C"
    if order_type is LpOrderType.MARKET:
        return RequestKind.CLOSE if closes else RequestKind.OPEN
    if not closes:
        return RequestKind.PLACE_PENDING
    return RequestKind.PLACE_SL if order_type is LpOrderType.STOP else RequestKind.PLACE_TP


def parse_fields(raw: str) -> tuple[str, Fields]:
    """MsgType and body fields of a raw FIX message (header and trailer dropped)."""
    msg_type = ""
    body: Fields = []
    for part in raw.split("\x01"):
        tag, eq, value = part.partition("=")
        if not eq or not tag.isdigit():
            continue
        number = int(tag)
        if number == 35:
            msg_type = value
        elif number not in _HEADER_TRAILER:
            body.append((number, value))
    return msg_type, body


def raw_field(raw: str, tag: int) -> str | None:
    """The first value of ``tag`` in a raw FIX message, without parsing the rest."""
    key = f"\x01{tag}="
    start = raw.find(key)
    if start < 0:
        return None
    start += len(key)
    end = raw.find("\x01", start)
    return raw[start : end if end >= 0 else None]


def msg_type_of(raw: str) -> str:
    """MsgType (35) of a raw FIX message ("" when absent)."""
    return raw_field(raw, 35) or ""


# MsgSeqNum (34), PossDupFlag (43) and PossResend (97) stay: the gateway logs them
_HEADER_TRAILER = frozenset({8, 9, 10, 49, 50, 52, 56, 57, 115, 122, 128})


@dataclass(frozen=True, slots=True)
class SentRef:
    """What an outgoing message of ours was, for a session Reject that names its MsgSeqNum."""

    msg_type: str
    lifecycle_id: str


# C901: one short case per FIX message type that can carry a report (8, 9, j, 3)
def report_document(  # noqa: C901
    msg_type: str, fields: Sequence[tuple[int, str]], lp: str, sent: SentRef | None = None
) -> dict[str, Any] | None:
    """The body published on ``reports`` for an LP message, or None when nothing to route.

    The document uses FIX tag numbers as keys (the normaliser reads them) plus
    ``provider``. A reject of one of our requests becomes a REJECTED execution report
    (39=8) for that request's lifecycle id.
    """
    tags = fields_mapping(fields)
    if msg_type == EXECUTION_REPORT:
        doc: dict[str, Any] = {"35": "8"}
        doc.update({key: tags[tag] for tag, key in _REPORT_KEYS if tag in tags})
        if doc.get("37") == "NONE":  # FIX's "no LP order" (a reject)
            del doc["37"]
        if doc.get("150") == "5" and doc.get("39") in ("0", "1"):
            # a replace confirmed (ExecType 5; FIX 4.4 sends the order's own OrdStatus):
            # the pipeline routes it as MODIFY
            doc["39"] = "5"
        if len(doc.get("58", "")) > TEXT_MAX_CHARS:
            # free text never makes a report too big to route (the dispatcher refuses
            # messages over max_message_bytes whole): the start is kept, marked as cut
            doc["58"] = doc["58"][: TEXT_MAX_CHARS - 1] + "\u2026"
        doc["provider"] = lp
        return doc
    if msg_type == CANCEL_REJECT:
        clordid = tags.get(11)
        if not clordid:
            return None
        reason = tags.get(58) or f"cxl_rej_reason={tags.get(102, 'unknown')}"
        return _rejected(lp, clordid, f"cxlrej-{clordid}", reason, tags.get(41), tags.get(37))
    if msg_type == BUSINESS_REJECT:
        clordid = tags.get(379) or (sent.lifecycle_id if sent is not None else None)
        if not clordid or tags.get(372, sent.msg_type if sent else "") not in _ORDER_TYPES:
            return None
        reason = tags.get(58) or f"business_reject_reason={tags.get(380, 'unknown')}"
        return _rejected(lp, clordid, f"bizrej-{clordid}", reason, None, None)
    if msg_type == SESSION_REJECT:
        if sent is None or sent.msg_type not in _ORDER_TYPES:
            return None
        detail = tags.get(58) or f"session_reject_reason={tags.get(373, 'unknown')}"
        reason = f"session reject (tag {tags.get(371, '?')}): {detail}"
        return _rejected(lp, sent.lifecycle_id, f"sessrej-{sent.lifecycle_id}", reason, None, None)
    return None


_ORDER_TYPES = frozenset({NEW_ORDER, CANCEL, REPLACE})


def _rejected(
    lp: str,
    clordid: str,
    exec_id: str,
    reason: str,
    orig: str | None,
    lp_order_id: str | None,
) -> dict[str, Any]:
    doc: dict[str, Any] = {"35": "8", "11": clordid, "17": exec_id, "39": "8", "150": "8"}
    if orig:
        doc["41"] = orig
    if lp_order_id and lp_order_id != "NONE":
        doc["37"] = lp_order_id
    doc["58"] = reason
    doc["provider"] = lp
    return doc


@dataclass(frozen=True, slots=True)
class QuoteUpdate:
    """A bid and/or ask for one symbol from a W or X message (None: unchanged)."""

    symbol: str
    bid: Decimal | None
    ask: Decimal | None


def quote_updates(msg_type: str, fields: Fields) -> list[QuoteUpdate]:
    """Best bid/ask changes in a snapshot (W) or incremental refresh (X).

    Entries are walked in wire order: an entry starts at MDUpdateAction (279, X) or
    MDEntryType (269, W). Deletes (279=2) and entry types other than bid/offer are
    skipped. Raises ``ValueError`` on a price that is not a positive decimal.
    """
    if msg_type not in (SNAPSHOT, INCREMENTAL):
        return []
    default_symbol = first(fields, 55) if msg_type == SNAPSHOT else None
    starts_at = 279 if msg_type == INCREMENTAL else 269
    entries: list[dict[int, str]] = []
    for tag, value in fields:
        if tag == starts_at or (tag == 269 and not entries):
            entries.append({})
        if entries:
            entries[-1].setdefault(tag, value)
    out: dict[str, tuple[Decimal | None, Decimal | None]] = {}
    for entry in entries:
        if entry.get(279) == "2":
            continue
        symbol = entry.get(55) or default_symbol
        side = entry.get(269)
        raw_px = entry.get(270)
        if not symbol or side not in ("0", "1") or not raw_px:
            continue
        price = Decimal(raw_px)
        if not price.is_finite() or price <= 0:
            raise ValueError(f"tag 270: not a positive price {raw_px!r}")
        bid, ask = out.get(symbol, (None, None))
        out[symbol] = (price, ask) if side == "0" else (bid, price)
    return [QuoteUpdate(symbol, bid, ask) for symbol, (bid, ask) in out.items()]


def market_data_request(request_id: str, symbols: Sequence[str]) -> Fields:
    """MarketDataRequest (V) body: snapshot + updates of best bid and offer."""
    body: Fields = [(262, request_id), (263, "1"), (264, "1"), (265, "1")]
    body.append((267, "2"))
    body.extend([(269, "0"), (269, "1")])
    body.append((146, str(len(symbols))))
    body.extend((55, symbol) for symbol in symbols)
    return body


def fields_mapping(fields: Sequence[tuple[int, str]]) -> dict[int, str]:
    """First value of each tag (built backwards, so that the first one is written last)."""
    return dict(reversed(fields))
