"""DB events carry the account's header and what changed, not the whole account (DESIGN §5).

The payload of a fill is the same size on an account with one open position and on one
with a thousand; header plus changes fold back into exactly the account the transition
produced, in any order, from events of either shape (the whole-account events written
before this change included).
"""

from __future__ import annotations

import random
from dataclasses import replace
from decimal import Decimal
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from execflow.domain.account_rows import ACCOUNT_CHANGES, AccountFold, AccountRow, assemble
from execflow.domain.accounting import add_position, reserve, with_margins
from execflow.domain.codec import account_to_dict
from execflow.domain.enums import OrderStatus, Side
from execflow.domain.models import Account, Position
from execflow.domain.transitions._common import event_payload
from tests.domain.account_history import account_history
from tests.domain.factories import account, market_order

D = Decimal


def _with_positions(count: int) -> Account:
    positions = tuple(
        Position(f"p{n:05d}", "EURUSD", Side.BUY, D("0.10"), D("1085.01")) for n in range(count)
    )
    return with_margins(account(), positions, ())


def _fill_payload(before: Account) -> dict[str, Any]:
    """The payload of opening order o1 (its margin reserved first) on ``before``."""
    order = market_order()
    reserved = replace(reserve(before, order.order_id, D("542.51")), version=before.version + 1)
    opened = add_position(
        reserved, Position(order.order_id, "EURUSD", Side.BUY, D("0.5"), D("1085.02"))
    )
    opened = replace(opened, version=reserved.version + 1)
    filled = replace(order, status=OrderStatus.OPEN, version=2)
    return event_payload(filled, reserved, opened, None)


def test_a_fill_payload_does_not_grow_with_the_open_positions() -> None:
    small = len(orjson.dumps(_fill_payload(_with_positions(1))))
    large = len(orjson.dumps(_fill_payload(_with_positions(1000))))
    # the balances and margins are longer numbers on the big account: a few bytes apart
    assert abs(large - small) <= 16, (small, large)
    assert small < 2000


def test_the_payload_names_what_the_fill_changed() -> None:
    payload = _fill_payload(_with_positions(3))
    header = payload["account"]
    assert isinstance(header, dict)
    assert "positions" not in header and "reservations" not in header
    assert header["version"] == 2
    assert payload[ACCOUNT_CHANGES] == {
        "positions": {
            "upsert": [
                {
                    "order_id": "o1",
                    "symbol": "EURUSD",
                    "side": "BUY",
                    "lots": "0.5",
                    "margin_per_lot_usd": "1085.02",
                }
            ]
        },
        "reservations": {"remove": ["o1"]},
    }


def test_an_event_that_leaves_the_account_alone_has_no_changes() -> None:
    acc = _with_positions(2)
    payload = event_payload(market_order(), acc, acc, None)
    assert ACCOUNT_CHANGES not in payload


def _fold(payloads: list[dict[str, Any]], base: Account | None = None) -> dict[str, Any] | None:
    fold = AccountFold("live:6")
    if base is not None:
        fold.add_snapshot(account_to_dict(base))
    for payload in payloads:
        fold.add_payload(payload["account"], payload.get(ACCOUNT_CHANGES))
    return fold.document()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), steps=st.integers(1, 40))
def test_header_and_changes_fold_back_into_the_account_in_any_order(seed: int, steps: int) -> None:
    history = account_history(steps, seed)
    shuffled = [*history.payloads, *history.payloads[: steps // 2]]  # redeliveries too
    random.Random(seed).shuffle(shuffled)
    assert _fold(shuffled, base=account()) == account_to_dict(history.final)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), steps=st.integers(2, 40), cut=st.integers(0, 40))
def test_whole_account_events_and_changes_mix_in_any_order(seed: int, steps: int, cut: int) -> None:
    """Events stored before this change carry the whole account: they fold in alike."""
    history = account_history(steps, seed)
    mixed = [
        {**p, "account": account_to_dict(history.accounts[n])} if n < cut else p
        for n, p in enumerate(history.payloads)
    ]
    random.Random(seed + 1).shuffle(mixed)
    # no base: the oldest events carry whole accounts, or the account started empty
    assert _fold(mixed) == account_to_dict(history.final)


def test_a_removal_beats_an_older_upsert_that_arrives_later() -> None:
    fold = AccountFold("live:6")
    fold.add_header({"account_id": "live:6", "version": 5}, 5)
    fold.add_row(AccountRow("live:6", "positions", "o1", 5, False))
    fold.add_row(AccountRow("live:6", "positions", "o1", 3, True, {"order_id": "o1"}))
    assert fold.document() == {
        "account_id": "live:6",
        "positions": [],
        "reservations": [],
        "version": 5,
    }


def test_rows_older_than_a_whole_account_snapshot_no_longer_count() -> None:
    header = {"account_id": "live:6", "version": 7}
    rows = [
        AccountRow("live:6", "positions", "old", 4, True, {"order_id": "old"}),
        AccountRow("live:6", "positions", "kept", 7, True, {"order_id": "kept"}),
        AccountRow("live:6", "reservations", "newer", 8, True, {"order_id": "newer"}),
    ]
    assert assemble(header, rows, rows_from=7) == {
        "account_id": "live:6",
        "positions": [{"order_id": "kept"}],
        "reservations": [{"order_id": "newer"}],
        "version": 7,
    }
