"""Reservations kept by ``domain.reservationbook`` equal a full walk, to the text."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from execflow.domain import codec
from execflow.domain.account_rows import account_changes
from execflow.domain.accounting import (
    add_position,
    close_position,
    release,
    reservation_of,
    reserve,
    with_margins,
)
from execflow.domain.codec import CodecError
from execflow.domain.enums import Side
from execflow.domain.models import Account, Position, Reservation
from execflow.domain.reservationbook import SMALL, total_of
from execflow.pipeline.decoded import DecodedRefdata
from tests.domain.factories import account

D = Decimal

# Booked amounts have two places; a few odd ones (a hand-built or older record) make the
# running total give way to a walk, whose text follows the smallest exponent held.
_amounts = st.one_of(
    st.integers(1, 99_999).map(lambda n: D(n).scaleb(-2)),
    st.sampled_from([D("10"), D("2.5"), D("0.125"), D("1E+1"), D("0.00")]),
)

_steps = st.lists(
    st.tuples(
        st.sampled_from(["reserve", "reserve", "release", "fill", "close"]),
        st.integers(0, 79),
        _amounts,
    ),
    max_size=100,
)


def _walk_total(held: tuple[Reservation, ...]) -> Decimal:
    return sum((r.amount for r in held), D(0))


def _unremembered(acct: Account) -> Account:
    """The same account with tuples no memo knows (looked up by a walk)."""
    return replace(
        acct, positions=tuple(list(acct.positions)), reservations=tuple(list(acct.reservations))
    )


def _holding(count: int, amount: Decimal) -> Account:
    held = tuple(Reservation(f"o{i:03d}", amount) for i in range(0, 2 * count, 2))
    return with_margins(account(account_id="live:9", balance=D(10**9)), (), held)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([0, 5, SMALL - 1, SMALL, 40]), _amounts, _steps)
def test_reserve_release_and_fills_keep_the_walks_reservations_and_totals(
    start: int, first_amount: Decimal, steps: list[tuple[str, int, Decimal]]
) -> None:
    acct = _holding(start, first_amount)
    model = {r.order_id: r.amount for r in acct.reservations}
    for kind, pick, amount in steps:
        order_id = f"o{pick:03d}"
        before = acct
        if kind == "reserve":
            acct = reserve(acct, order_id, amount)
            model[order_id] = amount
        elif kind == "release":
            acct = release(acct, order_id)
            model.pop(order_id, None)
        elif kind == "fill":  # the reservation gives way to the position
            acct = add_position(acct, Position(order_id, "EURUSD", Side.BUY, D("0.1"), D(1085)))
            model.pop(order_id, None)
        else:
            acct = close_position(acct, order_id, D(0))
        expected = tuple(Reservation(k, model[k]) for k in sorted(model))
        assert acct.reservations == expected
        assert str(acct.used_margin_all) == str(acct.used_margin_executed + _walk_total(expected))
        assert str(reservation_of(acct, order_id)) == str(acct.reservation_for(order_id))
        assert codec.account_document(acct) == codec.account_to_dict(acct)
        # the DB event's changes, found by bisection, are the ones a walk finds
        assert account_changes(before, acct, [order_id]) == account_changes(
            _unremembered(before), _unremembered(acct), [order_id]
        )


def test_a_large_account_drained_and_mixed_amounts_read_as_the_walk_does() -> None:
    acct = _holding(SMALL, D("12.34"))
    acct = reserve(acct, "a", D("10"))  # another exponent: the walk's text follows "10"
    assert str(acct.used_margin_all) == str(_walk_total(acct.reservations))
    for r in acct.reservations[1:]:
        acct = release(acct, r.order_id)
    assert [r.order_id for r in acct.reservations] == ["a"]
    assert str(acct.used_margin_all) == "10"  # not 10.00
    acct = release(acct, "a")
    assert acct.reservations == ()
    assert str(acct.used_margin_all) == "0"  # the empty walk's sum, not 0.00
    assert str(reservation_of(acct, "a")) == "0"
    booked = _holding(SMALL, D("12.34"))
    for r in booked.reservations:
        booked = release(booked, r.order_id)
    assert str(booked.used_margin_all) == "0"  # 12.34 - 12.34 would read 0.00


def test_a_large_account_is_moved_not_walked_and_a_small_one_walked() -> None:
    large = reserve(_holding(SMALL, D("12.34")), "o999", D("1.00"))
    assert total_of(large.reservations) is not None  # remembered: the next one moves it
    assert release(large, "o999").used_margin_all == D("12.34") * SMALL
    small = reserve(_holding(2, D("12.34")), "o999", D("1.00"))
    assert total_of(small.reservations) is None  # walked each time: cheaper at this size


def test_a_hand_built_tuple_with_an_order_twice_is_walked_as_before() -> None:
    twice = (Reservation("b", D("1.00")), Reservation("a", D("2.00")), Reservation("b", D("3.00")))
    acct = with_margins(account(), (), twice * 12)  # past SMALL, not unique: not remembered
    assert total_of(acct.reservations) is None
    assert acct.used_margin_all == D("72.00")
    released = release(acct, "b")
    assert [r.order_id for r in released.reservations] == ["a"] * 12
    assert str(released.used_margin_all) == "24.00"


def _stored(acct: Account) -> dict[str, object]:
    loaded = orjson.loads(orjson.dumps(codec.account_to_dict(acct)))
    assert isinstance(loaded, dict)
    return loaded


@pytest.mark.parametrize(
    ("change", "order_id"),
    [
        ("put", "a000"),  # first
        ("put", "o041"),  # between two
        ("put", "z999"),  # last
        ("put", "o040"),  # replaced
        ("drop", "o000"),
        ("drop", "o040"),
        ("drop", f"o{2 * (SMALL + 9):03d}"),
    ],
)
def test_a_document_another_process_changed_in_one_reservation_reuses_the_rest(
    change: str, order_id: str
) -> None:
    decoded = DecodedRefdata()
    before = _holding(SMALL + 10, D("12.34"))
    first = decoded.account("live:9", _stored(before))
    after = reserve(before, order_id, D("7.77")) if change == "put" else release(before, order_id)
    read = decoded.account("live:9", _stored(after))
    assert read == codec.account_from_dict(_stored(after))
    assert str(read.used_margin_all) == str(after.used_margin_all)
    kept = {r.order_id: r for r in first.reservations}
    reused = [r for r in read.reservations if kept.get(r.order_id) is r]
    assert len(reused) == len(read.reservations) - (change == "put")  # the rest not decoded
    # and the next transition moves that tuple's total instead of walking it
    assert total_of(read.reservations) is not None


def test_a_malformed_reservation_in_the_changed_place_is_refused_as_a_whole_read_is() -> None:
    decoded = DecodedRefdata()
    before = _holding(SMALL + 10, D("12.34"))
    decoded.account("live:9", _stored(before))
    broken = _stored(before)
    reservations = broken["reservations"]
    assert isinstance(reservations, list)
    broken["reservations"] = [{"order_id": "a000", "amount": 7}, *reservations]
    with pytest.raises(CodecError):
        decoded.account("live:9", broken)


def test_a_change_on_top_of_another_process_write_encodes_only_the_changed_items() -> None:
    decoded = DecodedRefdata()
    before = _holding(SMALL + 10, D("12.34"))
    written = codec.account_document(before)  # this process's last write of the account
    decoded.remember_account(written, before)
    foreign = reserve(before, "a000", D("7.77"))  # the intake, in another process
    read = decoded.account("live:9", _stored(foreign))
    after = release(read, "o010")  # this worker's own change on top
    document = codec.account_document(after)
    assert document == codec.account_to_dict(after)
    ours = {id(item) for item in written["reservations"]}
    shared = [item for item in document["reservations"] if id(item) in ours]
    assert len(shared) == len(after.reservations) - 1  # all but the one put in: not encoded


def test_a_nan_held_among_many_is_walked_so_its_release_leaves_the_walks_total() -> None:
    acct = reserve(_holding(SMALL, D("12.34")), "a", D("NaN"))
    assert acct.used_margin_all.is_nan()
    released = release(acct, "a")
    assert str(released.used_margin_all) == str(_walk_total(released.reservations))
