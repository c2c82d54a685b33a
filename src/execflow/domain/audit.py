"""The audit chain: canonical bytes of an order event, hash links, and the verifier.

Pure: the database backend appends links (``event_bytes``, ``link``) inside the
transaction that inserts the events; ``ChainVerifier`` walks a stored chain and names its
first broken link. docs/audit.md defines the bytes; nothing here may change them without
a new chain format, or every stored chain stops verifying.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

import orjson
import rfc8785

from execflow.errors import AuditError

__all__ = [
    "GENESIS",
    "BrokenLink",
    "ChainHead",
    "ChainProblem",
    "ChainRow",
    "ChainVerifier",
    "canonical_json",
    "chain_order_key",
    "event_bytes",
    "link",
]

GENESIS = "0" * 64
"""The "previous hash" of an account's first link (32 zero bytes, hex)."""

_INT_MAX = 2**53 - 1


def canonical_json(value: Any) -> bytes:
    """``value`` in RFC 8785 canonical JSON (sorted keys, no spaces, UTF-8).

    RFC 8785 in pure Python costs ~200 us for a 2.5 KB event payload, orjson with sorted
    keys ~7 us, and the two are byte-identical on values without floats whose keys are
    ASCII (tests/domain/test_audit.py holds that as a property). Integers beyond
    +-(2**53 - 1), which RFC 8785 could only round to a double, are written exactly.
    """
    try:
        plain = _plain(value)
    except RecursionError:
        raise AuditError("value is nested too deeply") from None
    if plain:
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError as exc:  # also orjson's nesting limit (255)
            raise AuditError("value is not JSON", error=str(exc)) from None
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, UnicodeError, RecursionError) as exc:
        raise AuditError("value has no canonical JSON form", error=repr(exc)) from None


_LEAVES = frozenset((str, int, bool, type(None)))


def _plain(value: Any) -> bool:
    """No float anywhere and only ASCII keys: orjson's output is RFC 8785's."""
    kind = type(value)
    if kind is dict:
        for key in value:
            if type(key) is not str or not key.isascii():
                return False
        items: Any = value.values()
    elif kind is list or kind is tuple:
        items = value
    else:
        return kind is not float
    # Leaves are most of a payload: one set lookup each, a call only for containers. A
    # loop, not all(): the generator costs a third more (9.5 vs 14 us a 2.5 KB payload).
    for item in items:  # noqa: SIM110
        if type(item) not in _LEAVES and not _plain(item):
            return False
    return True


def event_bytes(
    *,
    account_id: str,
    chain_seq: int,
    created_at: datetime,
    event_id: str,
    exec_id: str | None,
    kind: str,
    order_id: str,
    payload_json: bytes,
) -> bytes:
    """The canonical bytes of one chained event: a JSON object, keys in RFC 8785 order.

    ``payload_json`` is ``canonical_json(payload)``, computed apart because it is the
    costly part and does not depend on the event's place in the chain.
    """
    return b"".join(
        (
            b'{"account_id":',
            _string(account_id),
            b',"chain_seq":',
            str(chain_seq).encode(),
            b',"created_at":"',
            _utc_text(created_at).encode(),
            b'","event_id":',
            _string(event_id),
            b',"exec_id":',
            b"null" if exec_id is None else _string(exec_id),
            b',"kind":',
            _string(kind),
            b',"order_id":',
            _string(order_id),
            b',"payload":',
            payload_json,
            b"}",
        )
    )


def _string(text: str) -> bytes:
    try:
        return orjson.dumps(text)
    except orjson.JSONEncodeError as exc:
        raise AuditError("text is not valid Unicode", error=str(exc)) from None


def _utc_text(when: datetime) -> str:
    """``2026-11-29T12:47:00.123456Z``; a naive time is taken as UTC (SQLite drops zones)."""
    utc = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def link(previous_hash: str, data: bytes) -> str:
    """SHA-256 of the previous link's 32 raw bytes followed by ``data``, as hex."""
    return hashlib.sha256(bytes.fromhex(previous_hash) + data).hexdigest()


def _int(value: Any) -> int:
    return value if type(value) is int else 0


def chain_order_key(
    event_id: str, order_id: str, payload: Mapping[str, Any]
) -> tuple[int, str, int, str]:
    """Where an event goes among events appended together: account version first.

    The account version is the one after the event (its ``account`` snapshot); events
    that left the account alone share it, and fall in (order id, order version, event
    id) order. Payloads without snapshots sort first, by order id and event id.
    """
    account = payload.get("account")
    order = payload.get("order")
    account_version = _int(account.get("version")) if isinstance(account, Mapping) else 0
    order_version = _int(order.get("version")) if isinstance(order, Mapping) else 0
    return (account_version, order_id, order_version, event_id)


# -- verification -------------------------------------------------------------------------------


class ChainRow(Protocol):
    """An event as read back from the database (``StoredEvent`` is one)."""

    @property
    def event_id(self) -> str: ...
    @property
    def order_id(self) -> str: ...
    @property
    def account_id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def payload(self) -> dict[str, Any]: ...
    @property
    def exec_id(self) -> str | None: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def chain_seq(self) -> int | None: ...
    @property
    def chain_hash(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class ChainHead:
    """An account's chain head as recorded by the writer: links so far and the last hash."""

    account_id: str
    length: int
    head_hash: str


class ChainProblem(StrEnum):
    """Why a link is broken."""

    HASH_MISMATCH = "hash_mismatch"
    """The stored hash is not SHA-256(previous hash + this event's bytes): the event,
    its place, or an event before it was changed, or the row was forged."""
    GAP = "gap"
    """Positions are missing before this event: rows were deleted."""
    HEAD_MISMATCH = "head_mismatch"
    """The chain ends elsewhere than its recorded head: rows deleted or added at the end."""
    HEAD_MISSING = "head_missing"
    """Events exist but the account has no recorded head."""
    UNCHAINED = "unchained"
    """An event outside the chain (no position or hash): inserted behind the writer."""


@dataclass(frozen=True, slots=True)
class BrokenLink:
    """The first broken link of one account's chain."""

    account_id: str
    problem: ChainProblem
    position: int
    """The chain position where the break is seen (1 = the account's first event)."""
    event_id: str | None
    order_id: str | None
    expected: str
    found: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "account_id": self.account_id,
            "problem": self.problem.value,
            "position": self.position,
            "event_id": self.event_id,
            "order_id": self.order_id,
            "expected": self.expected,
            "found": self.found,
            "detail": self.detail,
        }


class ChainVerifier:
    """Walks one account's chain in position order; remembers only the last link.

    ``feed`` every chained row by ascending position, then ``finish`` with the recorded
    head and the first unchained row, if any. ``broken`` is the first broken link.
    """

    def __init__(self, account_id: str) -> None:
        self.account_id = account_id
        self.position = 0
        self.head_hash = GENESIS
        self.broken: BrokenLink | None = None
        self._last: ChainRow | None = None

    def feed(self, row: ChainRow) -> BrokenLink | None:
        """Check the next row; the first broken link stops the walk."""
        if self.broken is not None:
            return self.broken
        expected_position = self.position + 1
        found_hash = row.chain_hash or ""
        try:
            expected_hash = link(self.head_hash, _row_bytes(row))
        except AuditError as exc:
            expected_hash = f"(cannot hash: {exc.message})"
        if row.chain_seq != expected_position:
            return self._break(
                ChainProblem.GAP,
                expected_position,
                row,
                expected_hash,
                found_hash,
                _gap_detail(row.chain_seq, self.position),
            )
        if found_hash != expected_hash:
            return self._break(
                ChainProblem.HASH_MISMATCH,
                expected_position,
                row,
                expected_hash,
                found_hash,
                "event changed, moved or forged",
            )
        self.position = expected_position
        self.head_hash = found_hash
        self._last = row
        return None

    def finish(
        self,
        head: ChainHead | None,
        unchained: ChainRow | None = None,
        past_head: ChainRow | None = None,
    ) -> BrokenLink | None:
        """Compare the end of the walk with the recorded head; then the rows outside it.

        ``past_head``: a chained row beyond the head that no writer appended (the head
        did not move while it was read); ``unchained``: a row without position or hash.
        """
        if self.broken is not None:
            return self.broken
        last = self._last
        if head is None and self.position > 0:
            return self._break(
                ChainProblem.HEAD_MISSING,
                self.position,
                last,
                self.head_hash,
                "",
                f"{self.position} links and no recorded head",
            )
        length = 0 if head is None else head.length
        recorded = GENESIS if head is None else head.head_hash
        if length != self.position or recorded != self.head_hash:
            return self._break(
                ChainProblem.HEAD_MISMATCH,
                max(self.position, 1),
                last,
                recorded,
                self.head_hash,
                f"head records {length} links, the chain has {self.position}",
            )
        if past_head is not None:
            return self._break(
                ChainProblem.HEAD_MISMATCH,
                past_head.chain_seq or self.position + 1,
                past_head,
                recorded,
                past_head.chain_hash or "",
                f"event past the recorded head ({length} links)",
            )
        if unchained is not None:
            return self._break(
                ChainProblem.UNCHAINED,
                self.position + 1,
                unchained,
                "a chained event",
                unchained.chain_hash or "",
                "event without a chain position or hash",
            )
        return None

    def _break(
        self,
        problem: ChainProblem,
        position: int,
        row: ChainRow | None,
        expected: str,
        found: str,
        detail: str,
    ) -> BrokenLink:
        self.broken = BrokenLink(
            account_id=self.account_id,
            problem=problem,
            position=position,
            event_id=None if row is None else row.event_id,
            order_id=None if row is None else row.order_id,
            expected=expected,
            found=found,
            detail=detail,
        )
        return self.broken


def _gap_detail(found: int | None, previous: int) -> str:
    if found is None or found <= previous:
        return f"position {found} follows {previous}: positions repeat or go back"
    missing = found - previous - 1
    return f"position {found} follows {previous}: {missing} event(s) missing before it"


def _row_bytes(row: ChainRow) -> bytes:
    return event_bytes(
        account_id=row.account_id,
        chain_seq=row.chain_seq or 0,
        created_at=row.created_at,
        event_id=row.event_id,
        exec_id=row.exec_id,
        kind=row.kind,
        order_id=row.order_id,
        payload_json=canonical_json(row.payload),
    )
