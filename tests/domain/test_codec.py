"""The codec is the one serialisation: round trips are exact and the dicts are JSON."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from execflow.domain import codec
from execflow.domain.effects import DbEvent, EventKind
from execflow.domain.models import Account, Order
from tests.domain import strategies as s

FAST = settings(max_examples=100, deadline=None)


def _through_json(data: dict[str, Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(json.dumps(data))
    return loaded


@FAST
@given(s.orders)
def test_order_round_trip_is_identity(order: Order) -> None:
    data = codec.order_to_dict(order)
    assert codec.order_from_dict(_through_json(data)) == order
    # stable: encoding the decoded value gives the very same dict
    assert codec.order_to_dict(codec.order_from_dict(data)) == data


@FAST
@given(s.accounts)
def test_account_round_trip_is_identity(account: Account) -> None:
    assert codec.account_from_dict(_through_json(codec.account_to_dict(account))) == account


@FAST
@given(
    st.one_of(
        s.instruments.map(lambda v: (codec.instrument_to_dict, codec.instrument_from_dict, v)),
        s.lifecycles.map(lambda v: (codec.lifecycle_to_dict, codec.lifecycle_from_dict, v)),
        s.requests.map(lambda v: (codec.request_to_dict, codec.request_from_dict, v)),
        s.reports.map(lambda v: (codec.report_to_dict, codec.report_from_dict, v)),
        s.effects.map(lambda v: (codec.effect_to_dict, codec.effect_from_dict, v)),
    )
)
def test_other_round_trips_are_identity(case: tuple[Any, Any, Any]) -> None:
    to_dict, from_dict, value = case
    assert from_dict(_through_json(to_dict(value))) == value


@FAST
@given(s.calculations)
def test_calculation_encodes_to_json(calculation: Any) -> None:
    data = codec.calculation_to_dict(calculation)
    assert _through_json(data) == data
    assert data["name"] == calculation.name.value


def test_decimal_keeps_its_exact_text() -> None:
    order = codec.order_from_dict(
        _through_json(codec.order_to_dict(_order(requested_price=Decimal("1.08500"))))
    )
    assert str(order.requested_price) == "1.08500"


def test_order_snapshot_drops_the_outbox_but_keeps_the_ledger() -> None:
    event = DbEvent("e", EventKind.ORDER_OPENED, "live:1", "o1", "x1", {"a": 1})
    order = _order(applied_exec_ids=("x1",))
    order = codec.order_from_dict({**codec.order_to_dict(order), "outbox": []})
    with_outbox = codec.order_from_dict(
        {
            **codec.order_to_dict(order),
            "outbox": [{"exec_id": "x1", "effects": [codec.effect_to_dict(event)]}],
        }
    )
    snap = codec.order_snapshot(with_outbox)
    assert snap["outbox"] == []
    assert snap["applied_exec_ids"] == ["x1"]
    assert codec.order_from_dict(snap).outbox == ()


@given(s.orders)
def test_order_snapshot_is_the_order_dict_with_an_empty_outbox(order: Order) -> None:
    whole = codec.order_to_dict(order)
    snap = codec.order_snapshot(order)
    assert snap == {**whole, "outbox": []}
    assert list(snap) == list(whole)  # same keys, same order


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"qty": 1.5}, "decimal must be a string"),
        ({"qty": "abc"}, "bad decimal"),
        ({"created_at": "2026-01-01T00:00:00"}, "naive datetime"),
        ({"status": "NOPE"}, "unknown enum value"),
        ({"surprise": 1}, "unknown keys"),
        ({"version": True}, "expected int"),
        ({"order_id": None}, "null not allowed"),
    ],
)
def test_decoding_is_strict(patch: dict[str, Any], message: str) -> None:
    data = {**codec.order_to_dict(_order()), **patch}
    with pytest.raises(codec.CodecError, match=message):
        codec.order_from_dict(data)


def test_missing_required_key_is_an_error_and_missing_optional_takes_default() -> None:
    data = codec.order_to_dict(_order())
    del data["swap"]
    assert codec.order_from_dict(data).swap == 0
    del data["order_id"]
    with pytest.raises(codec.CodecError, match="missing required keys"):
        codec.order_from_dict(data)


def test_naive_datetime_cannot_be_encoded() -> None:
    with pytest.raises(codec.CodecError, match="naive"):
        codec.order_to_dict(_order(created_at=datetime(2026, 1, 1)))


def test_effect_with_unknown_tag_is_refused() -> None:
    with pytest.raises(codec.CodecError, match="unknown effect type"):
        codec.effect_from_dict({"type": "Nope"})


def _order(**changes: Any) -> Order:
    from tests.domain.factories import market_order

    return market_order(**changes)


def test_a_float_where_a_decimal_belongs_cannot_be_encoded() -> None:
    with pytest.raises(codec.CodecError, match="cannot be encoded"):
        codec.order_to_dict(_order(qty=1.5))


def test_null_in_a_required_nested_field_is_refused() -> None:
    data = codec.order_to_dict(_order())
    data["sl"] = {**data["sl"], "state": None}
    with pytest.raises(codec.CodecError, match="null not allowed"):
        codec.order_from_dict(data)
    data = codec.order_to_dict(_order())
    with pytest.raises(codec.CodecError, match="null not allowed"):
        codec.order_from_dict({**data, "sl": None})


def test_payload_is_carried_as_is_and_its_top_level_copied() -> None:
    payload = {"order": {"qty": "1.0"}, "deltas": {"balance": "-1.25"}, "report": None}
    event = DbEvent("e", EventKind.ORDER_OPENED, "live:1", "o1", "x1", payload)
    data = codec.effect_to_dict(event)
    assert data["payload"] == payload
    assert data["payload"] is not payload
    assert codec.effect_from_dict(_through_json(data)) == event


def test_unknown_keys_are_refused_in_nested_objects_too() -> None:
    data = codec.order_to_dict(_order())
    data["tp"] = {**data["tp"], "surprise": 1}
    with pytest.raises(codec.CodecError, match="unknown keys"):
        codec.order_from_dict(data)


def test_memoised_positions_decode_the_same_and_encode_to_owned_dicts() -> None:
    position = {
        "order_id": "o1",
        "symbol": "EURUSD",
        "side": "BUY",
        "lots": "0.10",
        "margin_per_lot_usd": "1085.00",
    }
    base = {"account_id": "live:1", "currency": "USD", "balance": "10", "leverage": "100"}
    data = {**base, "group": "g", "positions": [position], "reservations": []}
    first = codec.account_from_dict(data)
    again = codec.account_from_dict(_through_json(data))
    assert again == first and again.positions[0].lots == Decimal("0.10")
    encoded = codec.account_to_dict(first)
    encoded["positions"][0]["lots"] = "mutated"
    assert codec.account_to_dict(first)["positions"][0]["lots"] == "0.10"
    # content that differs (even only in the text of a decimal) is decoded afresh
    other = {**data, "positions": [{**position, "lots": "0.1"}]}
    assert str(codec.account_from_dict(other).positions[0].lots) == "0.1"
    # and a memoised entry never makes a malformed one acceptable
    with pytest.raises(codec.CodecError):
        codec.account_from_dict({**data, "positions": [{**position, "lots": 0.1}]})
