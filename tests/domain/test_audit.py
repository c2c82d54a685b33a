"""The audit chain's pure parts: canonical bytes (== RFC 8785), links, the verifier."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from execflow.domain.audit import (
    GENESIS,
    ChainHead,
    ChainProblem,
    ChainVerifier,
    canonical_json,
    chain_order_key,
    event_bytes,
    link,
)
from execflow.errors import AuditError

WHEN = datetime(2026, 11, 29, 12, 47, 0, 123456, tzinfo=UTC)

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


def _reference(value: Any) -> bytes | None:
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, UnicodeError):
        return None


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_canonical_json_is_rfc8785_for_every_json_value(value: Any) -> None:
    expected = _reference(value)
    if expected is None:
        with pytest.raises(AuditError):
            canonical_json(value)
    else:
        assert canonical_json(value) == expected


def test_the_fast_path_stays_exact_where_rfc8785_would_differ() -> None:
    # keys above U+E000 and astral keys sort differently in UTF-16 and in code points
    tricky = {"\ue000": 1, "\U0001f600": 2, "a": 1.5e21}
    assert canonical_json(tricky) == rfc8785.dumps(tricky)
    # an integer RFC 8785 cannot carry exactly is written exactly (documented)
    assert canonical_json({"n": 2**60}) == b'{"n":1152921504606846976}'
    with pytest.raises(AuditError):
        canonical_json({"x": float("nan")})
    with pytest.raises(AuditError):
        canonical_json({"x": "\ud800"})
    # nesting that orjson.loads still accepts (1024 levels) is refused, never a crash
    deep: Any = "x"
    for _ in range(1020):
        deep = [deep]
    for value in (deep, [*deep, 0.5]):
        with pytest.raises(AuditError):
            canonical_json(value)


def test_event_bytes_are_the_rfc8785_form_of_the_event_object() -> None:
    payload = {"deltas": {"balance": "-1.20"}, "text": "é\x1b[2J\u2028"}
    fields: dict[str, Any] = {
        "account_id": "live:6",
        "chain_seq": 7,
        "event_id": "o1:x1:ORDER_OPENED",
        "exec_id": None,
        "kind": "ORDER_OPENED",
        "order_id": "o1",
    }
    data = event_bytes(
        **fields,
        created_at=WHEN.astimezone(timezone(timedelta(hours=2))),
        payload_json=canonical_json(payload),
    )
    as_object = {**fields, "created_at": "2026-11-29T12:47:00.123456Z", "payload": payload}
    assert data == rfc8785.dumps(as_object)
    # a naive time (SQLite gives those back) is UTC
    naive = event_bytes(**fields, created_at=WHEN.replace(tzinfo=None), payload_json=b"{}")
    assert b'"created_at":"2026-11-29T12:47:00.123456Z"' in naive


def test_a_link_is_sha256_of_the_previous_raw_hash_and_the_bytes() -> None:
    first = link(GENESIS, b"abc")
    assert first == hashlib.sha256(b"\x00" * 32 + b"abc").hexdigest()
    assert link(first, b"abc") == hashlib.sha256(bytes.fromhex(first) + b"abc").hexdigest()


def test_events_appended_together_go_in_account_version_order() -> None:
    def payload(account_version: int, order_version: int) -> dict[str, Any]:
        return {"account": {"version": account_version}, "order": {"version": order_version}}

    keys = [
        chain_order_key("e3", "o2", payload(5, 1)),
        chain_order_key("e1", "o9", payload(4, 3)),
        chain_order_key("e2", "o1", payload(5, 2)),
        chain_order_key("e4", "o1", payload(5, 1)),
        chain_order_key("e0", "o0", {"n": 1}),
    ]
    assert [k[3] for k in sorted(keys)] == ["e0", "e1", "e4", "e2", "e3"]


# -- the verifier ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    event_id: str
    order_id: str
    account_id: str
    kind: str
    payload: dict[str, Any]
    exec_id: str | None
    created_at: datetime
    chain_seq: int | None
    chain_hash: str | None


def chain(n: int, account_id: str = "live:6") -> tuple[list[Row], ChainHead]:
    rows = []
    previous = GENESIS
    for position in range(1, n + 1):
        row = Row(
            event_id=f"o{position}:x:ORDER_OPENED",
            order_id=f"o{position}",
            account_id=account_id,
            kind="ORDER_OPENED",
            payload={"deltas": {"balance": f"-{position}.00"}},
            exec_id=f"x{position}",
            created_at=WHEN,
            chain_seq=position,
            chain_hash=None,
        )
        previous = link(
            previous,
            event_bytes(
                account_id=account_id,
                chain_seq=position,
                created_at=WHEN,
                event_id=row.event_id,
                exec_id=row.exec_id,
                kind=row.kind,
                order_id=row.order_id,
                payload_json=canonical_json(row.payload),
            ),
        )
        rows.append(replace(row, chain_hash=previous))
    return rows, ChainHead(account_id, n, previous)


def walk(rows: list[Row], head: ChainHead | None, unchained: Row | None = None) -> Any:
    verifier = ChainVerifier("live:6")
    for row in rows:
        if verifier.feed(row) is not None:
            break
    return verifier.finish(head, unchained)


def test_an_untouched_chain_verifies() -> None:
    rows, head = chain(5)
    assert walk(rows, head) is None
    assert walk([], None) is None


def test_an_edited_event_is_the_first_broken_link() -> None:
    rows, head = chain(5)
    rows[2] = replace(rows[2], payload={"deltas": {"balance": "-300.00"}})
    broken = walk(rows, head)
    assert broken.problem is ChainProblem.HASH_MISMATCH
    assert (broken.position, broken.event_id, broken.order_id) == (3, "o3:x:ORDER_OPENED", "o3")
    assert broken.found == rows[2].chain_hash and broken.expected != broken.found


def test_a_deleted_event_shows_as_a_gap_before_the_next() -> None:
    rows, head = chain(5)
    del rows[1]
    broken = walk(rows, head)
    assert broken.problem is ChainProblem.GAP
    assert (broken.position, broken.order_id) == (2, "o3")
    assert "1 event(s) missing" in broken.detail


def test_events_cut_or_added_at_the_end_disagree_with_the_head() -> None:
    rows, head = chain(5)
    broken = walk(rows[:4], head)
    assert broken.problem is ChainProblem.HEAD_MISMATCH
    assert (broken.expected, broken.found) == (head.head_hash, rows[3].chain_hash)
    longer, _ = chain(6)
    assert walk(longer, head).problem is ChainProblem.HEAD_MISMATCH
    assert walk(rows, None).problem is ChainProblem.HEAD_MISSING


def test_an_event_outside_the_chain_is_named() -> None:
    rows, head = chain(3)
    forged = replace(rows[0], event_id="forged", chain_seq=None, chain_hash=None)
    broken = walk(rows, head, forged)
    assert broken.problem is ChainProblem.UNCHAINED
    assert (broken.event_id, broken.position) == ("forged", 4)


def test_an_event_past_a_head_no_writer_moved_is_named() -> None:
    rows, head = chain(4)
    longer, _ = chain(5)
    verifier = ChainVerifier("live:6")
    for row in rows:
        verifier.feed(row)
    broken = verifier.finish(head, None, longer[4])
    assert broken is not None and broken.problem is ChainProblem.HEAD_MISMATCH
    assert (broken.position, broken.order_id) == (5, "o5")


def test_swapped_positions_break_the_chain() -> None:
    rows, head = chain(4)
    rows[1], rows[2] = replace(rows[2], chain_seq=2), replace(rows[1], chain_seq=3)
    broken = walk(rows, head)
    assert broken.problem is ChainProblem.HASH_MISMATCH and broken.position == 2
