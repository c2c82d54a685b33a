"""The one serialisation of domain objects: exact, stable, JSON-compatible dicts.

Decimals become strings (``str(Decimal)``, so ``"1.08500"`` keeps its precision),
datetimes ISO-8601 strings with their UTC offset, enums their value, tuples lists, and
nested dataclasses dicts whose keys are the field names. A member of a union of several
dataclasses (an ``Effect``) carries its class name under ``"type"``. Decoding is strict:
wrong types, unknown keys and naive datetimes raise ``CodecError``; a missing key takes
the field's default, so snapshots written before a field existed still load.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import Enum
from functools import cache
from typing import Any, TypeVar, cast

from execflow.domain.effects import Calculation, DbEvent, Effect, LpRequest, OutboxEntry
from execflow.domain.messages import ExecutionReport, ProviderRequest
from execflow.domain.models import Account, InstrumentConfig, LifecycleRecord, Order
from execflow.errors import ExecflowError

__all__ = [
    "CodecError",
    "account_from_dict",
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
    "report_from_dict",
    "report_to_dict",
    "request_from_dict",
    "request_to_dict",
]

_T = TypeVar("_T")
_TYPE_TAG = "type"


class CodecError(ExecflowError):
    """A stored dict does not decode to the expected domain object."""


@cache
def _hints(cls: Any) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _union_args(hint: Any) -> tuple[Any, ...] | None:
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(hint)
    return None


def _tagged(hint: Any) -> bool:
    args = _union_args(hint)
    return args is not None and sum(dataclasses.is_dataclass(a) for a in args) > 1


def encode(obj: Any) -> dict[str, Any]:
    """Encode a domain dataclass instance as a JSON-compatible dict."""
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        raise CodecError("not a dataclass instance", value_type=type(obj).__name__)
    hints = _hints(type(obj))
    return {f.name: _encode(getattr(obj, f.name), hints[f.name]) for f in dataclasses.fields(obj)}


def _encode(value: Any, hint: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise CodecError("naive datetime", value=str(value))
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = encode(value)
        if _tagged(hint):
            out = {_TYPE_TAG: type(value).__name__, **out}
        return out
    if isinstance(value, tuple):
        args = typing.get_args(hint)
        item_hint = args[0] if args else Any
        return [_encode(v, item_hint) for v in value]
    if isinstance(value, Mapping):
        args = typing.get_args(hint)
        value_hint = args[1] if len(args) == 2 else Any
        return {str(k): _encode(v, value_hint) for k, v in value.items()}
    if isinstance(value, list):
        return [_encode(v, Any) for v in value]
    if isinstance(value, bool | int | str):
        return value
    raise CodecError("value cannot be encoded", value_type=type(value).__name__)


def decode(cls: type[_T], data: Mapping[str, Any]) -> _T:
    """Decode a dict produced by ``encode`` back into ``cls``."""
    if not isinstance(data, Mapping):
        raise CodecError("expected an object", target=cls.__name__)
    hints = _hints(cast(Any, cls))
    names = {f.name for f in dataclasses.fields(cast(Any, cls))}
    unknown = set(data) - names - {_TYPE_TAG}
    if unknown:
        raise CodecError("unknown keys", target=cls.__name__, keys=",".join(sorted(unknown)))
    kwargs = {
        name: _decode(data[name], hints[name], f"{cls.__name__}.{name}")
        for name in names
        if name in data
    }
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise CodecError("missing required keys", target=cls.__name__, error=str(exc)) from exc


def _decode(value: Any, hint: Any, where: str) -> Any:
    if hint is Any:
        return value
    args = _union_args(hint)
    if args is not None:
        return _decode_union(value, args, where)
    if value is None:
        raise CodecError("null not allowed", field=where)
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise CodecError("expected a list", field=where)
        return tuple(_decode(v, typing.get_args(hint)[0], where) for v in value)
    if origin in (Mapping, dict, typing.Mapping):
        if not isinstance(value, Mapping):
            raise CodecError("expected an object", field=where)
        value_hint = typing.get_args(hint)[1]
        return {str(k): _decode(v, value_hint, where) for k, v in value.items()}
    if isinstance(hint, type):
        return _decode_scalar(value, hint, where)
    raise CodecError("unsupported type", field=where, hint=str(hint))


def _decode_union(value: Any, args: tuple[Any, ...], where: str) -> Any:
    if value is None:
        if type(None) in args:
            return None
        raise CodecError("null not allowed", field=where)
    members = [a for a in args if a is not type(None)]
    if len(members) == 1:
        return _decode(value, members[0], where)
    if not isinstance(value, Mapping) or _TYPE_TAG not in value:
        raise CodecError("tagged object expected", field=where)
    for member in members:
        if isinstance(member, type) and member.__name__ == value[_TYPE_TAG]:
            return decode(member, value)
    raise CodecError("unknown type tag", field=where, tag=str(value[_TYPE_TAG]))


def _decode_scalar(value: Any, hint: type, where: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return decode(hint, value)
    if issubclass(hint, Enum):
        try:
            return hint(value)
        except ValueError as exc:
            raise CodecError("unknown enum value", field=where, value=str(value)) from exc
    if hint is Decimal:
        if not isinstance(value, str):
            raise CodecError("decimal must be a string", field=where)
        try:
            return Decimal(value)
        except InvalidOperation as exc:
            raise CodecError("bad decimal", field=where, value=value) from exc
    if hint is datetime:
        if not isinstance(value, str):
            raise CodecError("datetime must be a string", field=where)
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise CodecError("bad datetime", field=where, value=value) from exc
        if parsed.utcoffset() is None:
            raise CodecError("naive datetime", field=where, value=value)
        return parsed
    if hint is bool or hint is str:
        if not isinstance(value, hint):
            raise CodecError(f"expected {hint.__name__}", field=where)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise CodecError("expected int", field=where)
        return value
    raise CodecError("unsupported type", field=where, hint=hint.__name__)


def order_to_dict(order: Order) -> dict[str, Any]:
    """Full order dict, ledger and outbox included (what the state store keeps)."""
    return encode(order)


def order_snapshot(order: Order) -> dict[str, Any]:
    """Order dict without the outbox (what DB events carry; avoids nesting effects)."""
    out = encode(order)
    out["outbox"] = []
    return out


def order_from_dict(data: Mapping[str, Any]) -> Order:
    """Decode an order dict."""
    return decode(Order, data)


def account_to_dict(account: Account) -> dict[str, Any]:
    """Encode an account."""
    return encode(account)


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
