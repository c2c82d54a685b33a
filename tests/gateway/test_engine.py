"""``engine.fields_message``: what the engine would put on the wire for our fields."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
import quickfix as fix

from execflow.domain.enums import LpOrderType, RequestKind, Side
from execflow.domain.messages import ProviderRequest
from execflow.gateway import engine
from execflow.gateway.fixmap import (
    Fields,
    market_data_request,
    parse_fields,
    raw_field,
    request_fields,
)


@pytest.fixture(scope="module")
def dictionary() -> object:
    return fix.DataDictionary(str(engine.data_dictionary()))


def _wire_checked(text: str) -> None:
    """BodyLength (9) and CheckSum (10) of ``text`` are right (the engine set them)."""
    body_start = text.index("\x0135=") + 1
    trailer = text.rindex("\x0110=") + 1
    assert int(raw_field(text, 9) or "-1") == len(text[body_start:trailer].encode())
    assert int(text[trailer + 3 : -1]) == sum(text[:trailer].encode()) % 256


@pytest.mark.parametrize(
    ("msg_type", "fields"),
    [
        request_fields(
            ProviderRequest(
                "L-1",
                RequestKind.PLACE_PENDING,
                "a1",
                "o-1",
                "EURUSD",
                Side.SELL,
                LpOrderType.LIMIT,
                Decimal("0.25"),
                price=Decimal("1.2345"),
            ),
            datetime(2026, 12, 6, 20, 0, tzinfo=UTC),
        ),
        ("V", market_data_request("md-1", ["EURUSD", "GBPUSD", "USDJPY"])),
    ],
    ids=["new-order-single", "market-data-request-with-groups"],
)
def test_fields_message_keeps_every_field_and_the_engine_sets_length_and_checksum(
    dictionary: object, msg_type: str, fields: Fields
) -> None:
    text = engine.fields_message(msg_type, fields, dictionary).toString()
    _wire_checked(text)
    parsed_type, parsed = parse_fields(text)
    assert parsed_type == msg_type
    # every field, repeating group entries included, in our order (the engine may put a
    # group's count before the other fields)
    assert sorted(parsed) == sorted(fields)
    assert [value for tag, value in parsed if tag == 55] == [v for t, v in fields if t == 55]
