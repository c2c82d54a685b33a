"""The one serialisation of domain objects: exact, stable, JSON-compatible dicts.

Decimals become strings (``str(Decimal)``, so ``"1.08500"`` keeps its precision),
datetimes ISO-8601 strings with their UTC offset, enums their value, tuples lists, and
nested dataclasses dicts whose keys are the field names. A member of a union of several
dataclasses (an ``Effect``) carries its class name under ``"type"``. A value typed ``Any``
(a ``DbEvent``'s payload) holds JSON values already (codec dicts, decimal strings) and is
carried as is, both ways; only its top-level mapping is copied. Decoding is strict:
wrong types, unknown keys and naive datetimes raise ``CodecError``; a missing key takes
the field's default, so snapshots written before a field existed still load.

Each dataclass is compiled once into a plan (one encoder and one decoder per field, from
its resolved type hint); encoding and decoding only run those. The items of a tuple of
small all-text dataclasses (an account's positions and reservations, which every
transition of the account re-encodes and re-decodes) are memoised both ways (``_Memo``).
"""

from __future__ import annotations

import dataclasses
import operator
import types
import typing
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import Enum
from functools import cache
from typing import Any, TypeVar, cast

from execflow.domain.editmemo import Edit
from execflow.domain.effects import Calculation, DbEvent, Effect, LpRequest, OutboxEntry
from execflow.domain.messages import ExecutionReport, ProviderRequest
from execflow.domain.models import (
    Account,
    InstrumentConfig,
    LifecycleRecord,
    Order,
    Position,
    Reservation,
)
from execflow.domain.positionbook import edit_of
from execflow.domain.reservationbook import SMALL as SMALL_RESERVATIONS
from execflow.domain.reservationbook import edit_of as reservation_edit_of
from execflow.errors import ExecflowError

__all__ = [
    "CodecError",
    "account_document",
    "account_from_dict",
    "account_header_document",
    "account_header_to_dict",
    "account_to_dict",
    "calculation_to_dict",
    "decode",
    "effect_from_dict",
    "effect_to_dict",
    "encode",
    "instrument_from_dict",
    "instrument_to_dict",
    "lifecycle_from_dict",
    "lifecycle_to_dict",
    "order_from_dict",
    "order_snapshot",
    "order_to_dict",
    "outbox_entry_to_dict",
    "position_to_dict",
    "report_from_dict",
    "report_to_dict",
    "request_from_dict",
    "request_to_dict",
    "reservation_to_dict",
]

_T = TypeVar("_T")
_TYPE_TAG = "type"


class CodecError(ExecflowError):
    """A stored dict does not decode to the expected domain object."""


# Each dataclass gets a plan once: one encoder and one decoder per field, chosen from its
# resolved type hint. Encoding or decoding then calls those closures directly, with no
# get_type_hints / get_origin / is_dataclass per value (the reflective walk cost most of
# a worker's CPU).

_Encoder = Callable[[Any], Any]
_Decoder = Callable[[Any], Any]
_NONE_TYPE = type(None)


class _NoLane:
    """The class of no value: a field whose fast lane is this always takes its closure."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Lane:
    """A field's usual case: a value of exactly class ``cls`` is ``convert``-ed (or kept)."""

    cls: type
    convert: Callable[[Any], Any] | None = None


_NO_LANE = _Lane(_NoLane)


def _encode_lanes(
    lanes: tuple[tuple[str, type, Callable[[Any], Any] | None, _Encoder | None], ...],
    values: tuple[Any, ...],
) -> dict[str, Any]:
    """Field by field: the usual class converted directly, else the general encoder."""
    return {
        name: (value if convert is None else convert(value))
        if value.__class__ is cls
        else value
        if enc is None or value is None
        else enc(value)
        for (name, cls, convert, enc), value in zip(lanes, values, strict=True)
    }


@dataclasses.dataclass(frozen=True, slots=True)
class _Plan:
    """How to encode and decode one dataclass.

    Each field has a closure that handles any value (converting or refusing it, naming the
    field in its error) and a lane for the usual case (a Decimal field holding a Decimal,
    a stored decimal being a string), taken without a Python call where it can be.
    """

    cls: type
    decoders: Mapping[str, _Decoder]
    allowed: frozenset[str]
    getter: Callable[[Any], tuple[Any, ...]]
    # (name, usual class, its conversion, the general encoder; None: already JSON)
    encode_lanes: tuple[tuple[str, type, Callable[[Any], Any] | None, _Encoder | None], ...]
    decode_lanes: tuple[tuple[str, type, Callable[[Any], Any] | None, _Decoder], ...]
    exact_keys: frozenset[str]

    def encode(self, obj: Any) -> dict[str, Any]:
        return _encode_lanes(self.encode_lanes, self.getter(obj))

    def decode(self, data: Any) -> Any:
        if data.__class__ is dict and (
            data.keys() == self.exact_keys or data.keys() == self.allowed
        ):
            # every field present: positional, and any surprise starts over on the checked path
            try:
                return self.cls(
                    *[
                        (value if convert is None else convert(value))
                        if (value := data[name]).__class__ is cls
                        else dec(value)
                        for name, cls, convert, dec in self.decode_lanes
                    ]
                )
            except (KeyError, TypeError, InvalidOperation):
                pass
        return self.decode_checked(data)

    def decode_checked(self, data: Any) -> Any:
        if not isinstance(data, Mapping):
            raise CodecError("expected an object", target=self.cls.__name__)
        if not self.allowed.issuperset(data.keys()):
            unknown = set(data) - self.allowed
            raise CodecError(
                "unknown keys", target=self.cls.__name__, keys=",".join(sorted(unknown))
            )
        decoders = self.decoders
        kwargs = {key: decoders[key](value) for key, value in data.items() if key in decoders}
        try:
            return self.cls(**kwargs)
        except TypeError as exc:
            raise CodecError(
                "missing required keys", target=self.cls.__name__, error=str(exc)
            ) from exc


@cache
def _plan(cls: type) -> _Plan:
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    if not all(f.init for f in fields):
        raise CodecError("dataclass with init=False fields", target=cls.__name__)
    names = tuple(f.name for f in fields)
    getter = operator.attrgetter(*names) if len(names) > 1 else _small_getter(names)
    encoders = tuple(_encoder(hints[name]) for name in names)
    decoders = {name: _decoder(hints[name], f"{cls.__name__}.{name}") for name in names}
    encode_lanes = []
    decode_lanes = []
    for name, enc in zip(names, encoders, strict=True):
        out_lane, in_lane = _lanes(_strip_none(hints[name]))
        encode_lanes.append((name, out_lane.cls, out_lane.convert, enc))
        decode_lanes.append((name, in_lane.cls, in_lane.convert, decoders[name]))
    return _Plan(
        cls=cls,
        decoders=decoders,
        allowed=frozenset((*names, _TYPE_TAG)),
        getter=getter,
        encode_lanes=tuple(encode_lanes),
        decode_lanes=tuple(decode_lanes),
        exact_keys=frozenset(names),
    )


def _small_getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    # attrgetter returns a bare value (not a tuple) for one name, and needs at least one
    return lambda obj: tuple(getattr(obj, name) for name in names)


def _strip_none(hint: Any) -> Any:
    args = _union_args(hint)
    if args is not None and _NONE_TYPE in args and len(args) == 2:
        return next(a for a in args if a is not _NONE_TYPE)
    return hint


def _lanes(hint: Any) -> tuple[_Lane, _Lane]:
    """(encode lane, decode lane) of a field's usual case; null always takes the closure."""
    if hint is str or hint is int or hint is bool:
        return _Lane(hint), _Lane(hint)
    if hint is Decimal:
        return _Lane(Decimal, str), _Lane(str, Decimal)
    if isinstance(hint, type) and issubclass(hint, Enum):
        members = {m.value: m for m in hint}
        kinds = {type(v) for v in members}
        in_lane = _Lane(kinds.pop(), members.__getitem__) if len(kinds) == 1 else _NO_LANE
        return _Lane(hint, operator.attrgetter("_value_")), in_lane
    if _is_dataclass_type(hint):
        plan = _plan(hint)
        return _Lane(hint, plan.encode), _Lane(dict, plan.decode)
    return _NO_LANE, _NO_LANE


def _union_args(hint: Any) -> tuple[Any, ...] | None:
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(hint)
    return None


def _is_dataclass_type(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def encode(obj: Any) -> dict[str, Any]:
    """Encode a domain dataclass instance as a JSON-compatible dict."""
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        raise CodecError("not a dataclass instance", value_type=type(obj).__name__)
    return _plan(type(obj)).encode(obj)


def decode(cls: type[_T], data: Mapping[str, Any]) -> _T:
    """Decode a dict produced by ``encode`` back into ``cls``."""
    return cast(_T, _plan(cast(type, cls)).decode(data))


# -- encoders (None is handled by _Plan.encode and the containers: it encodes as null) --


# C901: one case per kind of type hint, read top to bottom (it runs once per field type)
def _encoder(hint: Any) -> _Encoder | None:  # noqa: C901
    if hint is Any:
        return None  # JSON values already (a DbEvent's payload of codec dicts): kept as is
    args = _union_args(hint)
    if args is not None:
        members = [a for a in args if a is not _NONE_TYPE]
        if sum(_is_dataclass_type(m) for m in members) > 1:
            return _tagged_encoder(members)
        if len(members) == 1:
            return _encoder(members[0])
        return _encode_any
    origin = typing.get_origin(hint)
    if origin is tuple:
        item_args = typing.get_args(hint)
        if item_args and _is_text_record(item_args[0]):
            return _list_encoder(_memo(item_args[0]).encode)
        return _list_encoder(_encoder(item_args[0]) if item_args else None)
    if origin in (Mapping, dict, typing.Mapping):
        map_args = typing.get_args(hint)
        return _map_encoder(_encoder(map_args[1]) if len(map_args) == 2 else None)
    if _is_dataclass_type(hint):
        return _plan(hint).encode
    if isinstance(hint, type) and issubclass(hint, Enum):
        return _encode_enum
    if hint is Decimal:
        return _encode_decimal
    if hint is datetime:
        return _encode_datetime
    if hint is str or hint is int or hint is bool:
        return _scalar_encoder(hint)
    return _encode_any


def _scalar_encoder(hint: type) -> _Encoder | None:
    # The common case (the declared type) passes through untouched; anything else takes
    # the generic path, which converts what it can and refuses the rest.
    def encode_scalar(value: Any) -> Any:
        return value if type(value) is hint else _encode_any(value)

    return encode_scalar


def _encode_enum(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    return _encode_any(value)


def _encode_decimal(value: Any) -> Any:
    if type(value) is Decimal:
        return str(value)
    return _encode_any(value)


def _encode_datetime(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise CodecError("naive datetime", value=str(value))
        return value.isoformat()
    return _encode_any(value)


def _tagged_encoder(members: list[Any]) -> _Encoder:
    plans = {m: _plan(m) for m in members if _is_dataclass_type(m)}

    def encode_tagged(value: Any) -> Any:
        plan = plans.get(type(value))
        if plan is None:
            return _encode_any(value)
        return {_TYPE_TAG: plan.cls.__name__, **plan.encode(value)}

    return encode_tagged


# -- memos of text records ------------------------------------------------------------------

_MEMO_ITEMS = 4096
"""Entries per memo and direction; a full memo starts over (it only saves work)."""


def _is_text_record(hint: Any) -> bool:
    """A dataclass whose every field is a non-null str, Decimal or text enum.

    Its encoded dict holds only strings, so two stored dicts that compare equal are
    the same text and decode to equal values: the decode memo may key on the content.
    """
    if not _is_dataclass_type(hint):
        return False
    hints = typing.get_type_hints(hint)
    for f in dataclasses.fields(hint):
        kind = hints[f.name]
        if kind is str or kind is Decimal:
            continue
        text_enum = isinstance(kind, type) and issubclass(kind, Enum)
        if not (text_enum and all(type(m.value) is str for m in kind)):
            return False
    return True


class _Memo:
    """Encodings by object identity and decodings by content, of one text-record class.

    An account's positions and reservations mostly outlive a transition unchanged: the
    same objects are encoded again, the same dicts decoded again. Encoding keys on the
    object's id and keeps the object (so the id cannot be reused while the entry
    lives) and returns a copy of the cached dict (callers own what they get). Decoding
    keys on the dict's items (all strings, see ``_is_text_record``) and returns the
    cached frozen object. Failures are never cached: they take the checked path again.
    """

    def __init__(self, cls: type) -> None:
        self._plan = _plan(cls)
        self._encoded: dict[int, tuple[Any, dict[str, Any]]] = {}
        self._decoded: dict[tuple[Any, ...], Any] = {}

    def encode(self, value: Any) -> dict[str, Any]:
        encoded = self._encoded
        hit = encoded.get(id(value))
        if hit is not None and hit[0] is value:
            return hit[1].copy()
        out = self._plan.encode(value)
        if len(encoded) >= _MEMO_ITEMS:
            encoded.clear()
        encoded[id(value)] = (value, out)
        return out.copy()

    def decoder(self, checked: _Decoder) -> _Decoder:
        decoded = self._decoded

        def decode_memo(value: Any) -> Any:
            if value.__class__ is not dict:
                return checked(value)
            try:
                # the keys then the values, flat: one tuple per entry, not one per field
                # too (a memo holds thousands: positions and reservations)
                key = (*value, *value.values())
                hit = decoded.get(key)
            except TypeError:  # an unhashable value: the checked path refuses it
                return checked(value)
            if hit is not None:
                return hit
            out = checked(value)
            if len(decoded) >= _MEMO_ITEMS:
                decoded.clear()
            decoded[key] = out
            return out

        return decode_memo


@cache
def _memo(cls: type) -> _Memo:
    return _Memo(cls)


def _list_encoder(item: _Encoder | None) -> _Encoder:
    def encode_list(value: Any) -> Any:
        if not isinstance(value, tuple | list):
            return _encode_any(value)
        if item is None:
            return list(value)
        return [None if v is None else item(v) for v in value]

    return encode_list


def _map_encoder(item: _Encoder | None) -> _Encoder:
    def encode_map(value: Any) -> Any:
        if not isinstance(value, Mapping):
            return _encode_any(value)
        if item is None:
            return {str(k): v for k, v in value.items()}
        return {str(k): None if v is None else item(v) for k, v in value.items()}

    return encode_map


# C901: one case per kind of value, the common kinds first (the order is the fast path)
def _encode_any(value: Any) -> Any:  # noqa: C901
    """Encode a value by what it is (fields typed ``Any``, and values of unexpected type)."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is dict:
        return {str(k): _encode_any(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [_encode_any(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise CodecError("naive datetime", value=str(value))
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plan(type(value)).encode(value)
    if isinstance(value, Mapping):
        return {str(k): _encode_any(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_encode_any(v) for v in value]
    if isinstance(value, bool | int | str):
        return value
    raise CodecError("value cannot be encoded", value_type=kind.__name__)


# -- decoders -----------------------------------------------------------------------------


def _decode_any(value: Any) -> Any:
    return value


def _decoder(hint: Any, where: str) -> _Decoder:
    """The decoder of one field; every decoder refuses null unless the hint allows it."""
    if hint is Any:
        return _decode_any
    args = _union_args(hint)
    if args is None:
        return _non_null_decoder(hint, where)
    members = [a for a in args if a is not _NONE_TYPE]
    inner = _decoder(members[0], where) if len(members) == 1 else _tagged_decoder(members, where)
    if _NONE_TYPE not in args:
        return inner

    def decode_optional(value: Any) -> Any:
        return None if value is None else inner(value)

    return decode_optional


def _refuse(value: Any, message: str, where: str, **fields: str) -> CodecError:
    if value is None:
        return CodecError("null not allowed", field=where)
    return CodecError(message, field=where, **fields)


def _non_null_decoder(hint: Any, where: str) -> _Decoder:
    origin = typing.get_origin(hint)
    if origin is tuple:
        item_hint = typing.get_args(hint)[0]
        item = _decoder(item_hint, where)
        if _is_text_record(item_hint):
            return _tuple_decoder(_memo(item_hint).decoder(item), where)
        return _tuple_decoder(item, where)
    if origin in (Mapping, dict, typing.Mapping):
        return _map_decoder(_decoder(typing.get_args(hint)[1], where), where)
    if isinstance(hint, type):
        return _scalar_decoder(hint, where)
    raise CodecError("unsupported type", field=where, hint=str(hint))


def _tagged_decoder(members: list[Any], where: str) -> _Decoder:
    by_name = {m.__name__: m for m in members if isinstance(m, type)}

    def decode_tagged(value: Any) -> Any:
        if not isinstance(value, Mapping) or _TYPE_TAG not in value:
            raise _refuse(value, "tagged object expected", where)
        member = by_name.get(value[_TYPE_TAG]) if isinstance(value[_TYPE_TAG], str) else None
        if member is None:
            raise CodecError("unknown type tag", field=where, tag=str(value[_TYPE_TAG]))
        return decode(member, value)

    return decode_tagged


def _tuple_decoder(item: _Decoder, where: str) -> _Decoder:
    def decode_tuple(value: Any) -> Any:
        if not isinstance(value, list | tuple):
            raise _refuse(value, "expected a list", where)
        return tuple([item(v) for v in value])

    return decode_tuple


def _map_decoder(item: _Decoder, where: str) -> _Decoder:
    def decode_map(value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise _refuse(value, "expected an object", where)
        if item is _decode_any:
            return {str(k): v for k, v in value.items()}
        return {str(k): item(v) for k, v in value.items()}

    return decode_map


def _scalar_decoder(hint: type, where: str) -> _Decoder:
    if dataclasses.is_dataclass(hint):
        plan = _plan(hint)

        def decode_dataclass(value: Any) -> Any:
            if value is None:
                raise CodecError("null not allowed", field=where)
            return plan.decode(value)

        return decode_dataclass
    if issubclass(hint, Enum):
        return _enum_decoder(hint, where)
    if hint is Decimal:
        return _decimal_decoder(where)
    if hint is datetime:
        return _datetime_decoder(where)
    if hint is bool or hint is str:
        return _exact_decoder(hint, where)
    if hint is int:
        return _int_decoder(where)
    raise CodecError("unsupported type", field=where, hint=hint.__name__)


def _enum_decoder(hint: type[Enum], where: str) -> _Decoder:
    members: dict[Any, Enum] = {m.value: m for m in hint}

    def decode_enum(value: Any) -> Any:
        try:
            return members[value]
        except (KeyError, TypeError):
            if value is None:
                raise CodecError("null not allowed", field=where) from None
        try:
            return hint(value)  # aliases and _missing_, as the enum itself decides
        except ValueError as exc:
            raise CodecError("unknown enum value", field=where, value=str(value)) from exc

    return decode_enum


def _decimal_decoder(where: str) -> _Decoder:
    def decode_decimal(value: Any) -> Any:
        if not isinstance(value, str):
            raise _refuse(value, "decimal must be a string", where)
        try:
            return Decimal(value)
        except InvalidOperation as exc:
            raise CodecError("bad decimal", field=where, value=value) from exc

    return decode_decimal


def _datetime_decoder(where: str) -> _Decoder:
    def decode_datetime(value: Any) -> Any:
        if not isinstance(value, str):
            raise _refuse(value, "datetime must be a string", where)
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise CodecError("bad datetime", field=where, value=value) from exc
        if parsed.utcoffset() is None:
            raise CodecError("naive datetime", field=where, value=value)
        return parsed

    return decode_datetime


def _exact_decoder(hint: type, where: str) -> _Decoder:
    message = f"expected {hint.__name__}"

    def decode_exact(value: Any) -> Any:
        if not isinstance(value, hint):
            raise _refuse(value, message, where)
        return value

    return decode_exact


def _int_decoder(where: str) -> _Decoder:
    def decode_int(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _refuse(value, "expected int", where)
        return value

    return decode_int


def order_to_dict(order: Order) -> dict[str, Any]:
    """Full order dict, ledger and outbox included (what the state store keeps)."""
    return encode(order)


def order_snapshot(order: Order) -> dict[str, Any]:
    """Order dict without the outbox (what DB events carry; avoids nesting effects).

    The outbox is left out before encoding, not encoded and dropped: its entries hold
    whole effects, the costliest part of an order to encode.
    """
    plan = _plan(Order)
    values = list(plan.getter(order))
    values[_outbox_at()] = ()
    out = _encode_lanes(plan.encode_lanes, tuple(values))
    out["outbox"] = []
    return out


@cache
def _outbox_at() -> int:
    """Where ``Order.outbox`` is among the order's fields."""
    names = [lane[0] for lane in _plan(Order).encode_lanes]
    return names.index("outbox")


def order_from_dict(data: Mapping[str, Any]) -> Order:
    """Decode an order dict."""
    return decode(Order, data)


def account_to_dict(account: Account) -> dict[str, Any]:
    """Encode an account."""
    return encode(account)


_ACCOUNT_LISTS = frozenset({"positions", "reservations"})


@cache
def _header_plan() -> tuple[tuple[Any, ...], Callable[[Any], tuple[Any, ...]]]:
    lanes = tuple(lane for lane in _plan(Account).encode_lanes if lane[0] not in _ACCOUNT_LISTS)
    return lanes, operator.attrgetter(*(lane[0] for lane in lanes))


def account_header_to_dict(account: Account) -> dict[str, Any]:
    """Encode an account without its positions and reservations (a constant size)."""
    lanes, getter = _header_plan()
    return _encode_lanes(lanes, getter(account))


def position_to_dict(position: Position) -> dict[str, Any]:
    """Encode one position (memoised like the account's list of them)."""
    return _memo(Position).encode(position)


def reservation_to_dict(reservation: Reservation) -> dict[str, Any]:
    """Encode one reservation (memoised like the account's list of them)."""
    return _memo(Reservation).encode(reservation)


_LastLists = dict[str, tuple[tuple[Any, ...], list[dict[str, Any]]]]

_LAST_POSITIONS: _LastLists = {}
"""Per account id, the positions tuple last encoded by ``account_document`` and its list."""

_LAST_RESERVATIONS: _LastLists = {}
"""Per account id, the reservations tuple last encoded and its list (the same for them)."""

_MAX_LAST_LISTS = 256
"""Accounts remembered (as many as ``pipeline.decoded`` keeps decoded: the lists are the
ones its documents hold, so this adds little memory); a full memo starts over."""


def account_document(account: Account) -> dict[str, Any]:
    """``account_to_dict(account)`` for a state store write, its positions and reservations
    encoded from the last document of the same account: only the items that changed are
    encoded.

    An open or close changes one position of the account's sorted tuple, a reserve or
    release one reservation (``domain.positionbook.Edit`` says which), so each list is the
    last one with that item put in or taken out, instead of every item of a large account
    encoded again. The item dicts in it are shared with earlier documents: the caller
    stores the document and must not modify it (the aliasing invariant of
    ``pipeline.decoded``); ``account_to_dict`` returns dicts the caller owns.
    """
    return _account_with(account, _positions_list(account.account_id, account.positions))


def account_header_document(account: Account) -> dict[str, Any]:
    """``account_document(account)`` with ``"positions": []``: the header a state store
    keeps beside one row per position (``position_to_dict``), whatever their number."""
    return _account_with(account, [])


def _account_with(account: Account, positions: list[dict[str, Any]]) -> dict[str, Any]:
    out = account_header_to_dict(account)
    version = out.pop("version")
    out["positions"] = positions
    held = account.reservations
    out["reservations"] = (  # a few: encoded each (memo hits), cheaper than the edit walk
        [reservation_to_dict(r) for r in held]
        if len(held) < SMALL_RESERVATIONS
        else _edited_list(
            _LAST_RESERVATIONS, account.account_id, held, reservation_edit_of, reservation_to_dict
        )
    )
    out["version"] = version  # last, where account_to_dict puts it
    return out


def _positions_list(account_id: str, positions: tuple[Position, ...]) -> list[dict[str, Any]]:
    return _edited_list(_LAST_POSITIONS, account_id, positions, edit_of, position_to_dict)


_MAX_EDITS = 2
"""Edits followed back to the tuple last encoded: a worker's own change on top of one
another process made (its read of that process's write, ``pipeline.decoded``)."""


def _edited_list(
    last_lists: _LastLists,
    account_id: str,
    items: tuple[Any, ...],
    edit_of_items: Callable[[Any], Edit | None],
    encode_item: Callable[[Any], dict[str, Any]],
) -> list[dict[str, Any]]:
    """The encoded list of ``items``: the account's last one when ``items`` is the tuple
    last encoded, or that one edited when ``items`` was made from it by one edit or two
    (``edit_of_items``)."""
    last = last_lists.get(account_id)
    encoded: list[dict[str, Any]] | None = None
    if last is not None and last[0] is items:
        encoded = last[1]
    elif last is not None:
        chain: list[tuple[tuple[Any, ...], Edit]] = []
        made = items
        for _ in range(_MAX_EDITS):
            edit = edit_of_items(made)
            if edit is None:
                break
            chain.append((made, edit))
            if edit.parent is last[0]:
                encoded = last[1]
                break
            made = edit.parent
        if encoded is not None:
            for made, edit in reversed(chain):
                put = [encode_item(made[edit.at])] if edit.inserted else []
                encoded = [*encoded[: edit.at], *put, *encoded[edit.at + edit.removed :]]
    if encoded is None:
        encoded = [encode_item(item) for item in items]
    if len(last_lists) >= _MAX_LAST_LISTS:
        last_lists.clear()
    last_lists[account_id] = (items, encoded)
    return list(encoded)


def account_from_dict(data: Mapping[str, Any]) -> Account:
    """Decode an account dict."""
    return decode(Account, data)


def instrument_to_dict(instrument: InstrumentConfig) -> dict[str, Any]:
    """Encode an instrument config."""
    return encode(instrument)


def instrument_from_dict(data: Mapping[str, Any]) -> InstrumentConfig:
    """Decode an instrument config dict."""
    return decode(InstrumentConfig, data)


def lifecycle_to_dict(record: LifecycleRecord) -> dict[str, Any]:
    """Encode a lifecycle record."""
    return encode(record)


def lifecycle_from_dict(data: Mapping[str, Any]) -> LifecycleRecord:
    """Decode a lifecycle record dict."""
    return decode(LifecycleRecord, data)


def request_to_dict(request: ProviderRequest) -> dict[str, Any]:
    """Encode a provider request (the message body sent to the LP adapter)."""
    return encode(request)


def request_from_dict(data: Mapping[str, Any]) -> ProviderRequest:
    """Decode a provider request dict."""
    return decode(ProviderRequest, data)


def report_to_dict(report: ExecutionReport) -> dict[str, Any]:
    """Encode a normalised execution report (queues between dispatcher and workers)."""
    return encode(report)


def report_from_dict(data: Mapping[str, Any]) -> ExecutionReport:
    """Decode a normalised execution report dict."""
    return decode(ExecutionReport, data)


def effect_to_dict(effect: Effect) -> dict[str, Any]:
    """Encode an effect with its ``type`` tag (``DbEvent`` or ``LpRequest``)."""
    return {_TYPE_TAG: type(effect).__name__, **encode(effect)}


def effect_from_dict(data: Mapping[str, Any]) -> Effect:
    """Decode a tagged effect dict."""
    tag = data.get(_TYPE_TAG)
    if tag == "DbEvent":
        return decode(DbEvent, data)
    if tag == "LpRequest":
        return decode(LpRequest, data)
    raise CodecError("unknown effect type", tag=str(tag))


def outbox_entry_to_dict(entry: OutboxEntry) -> dict[str, Any]:
    """Encode one outbox entry."""
    return encode(entry)


def calculation_to_dict(calculation: Calculation) -> dict[str, Any]:
    """Encode a calculation record (one ``orders_calculated.log`` line's fields)."""
    return encode(calculation)
