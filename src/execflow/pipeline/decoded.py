"""Decoded reference data, memoised per process and owned by its ``Services``.

Reference data (accounts, instrument configs, prices) changes rarely and is read by
every transition: ``DecodedRefdata`` decodes each stored document once per change, not
once per message. ``Services`` builds one in its constructor, so two ``Services`` (two
processes, or two tests) never share an entry; callers reach it as ``services.decoded``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import replace
from decimal import Decimal, InvalidOperation
from typing import Any, Generic, TypeVar

from execflow.backends.state import Versioned, header_of
from execflow.domain.codec import CodecError, account_from_dict, decode, instrument_from_dict
from execflow.domain.models import (
    Account,
    InstrumentConfig,
    Position,
    Prices,
    Quote,
    Reservation,
)
from execflow.domain.positionbook import sorted_book
from execflow.domain.reservationbook import SMALL, spliced
from execflow.errors import StoreError

__all__ = ["DecodedMemo", "DecodedRefdata", "TokenCache", "quote_of"]

T = TypeVar("T")


class DecodedMemo(Generic[T]):
    """The decoded form of the last stored value seen per key.

    Keyed by content: a lookup compares the stored value with the one remembered for its
    key and decodes again when they differ, so it is right for any store, any process and
    any writer in between; an unchanged entry costs one comparison. At ``max_keys`` entries
    it starts over.

    Aliasing invariant (the one rule of every memo here): the memo keeps a reference to
    each stored value it is given, not a copy, and hands every caller the same decoded
    object. So a stored value passed to ``get`` or ``put`` must stay unmodified
    afterwards, and a decoded value must never be modified (the domain models are
    immutable; the stored documents are the dicts a store returned or a commit wrote).
    """

    __slots__ = ("_max_keys", "_seen")

    def __init__(self, max_keys: int = 4096) -> None:
        self._seen: dict[Hashable, tuple[Any, T]] = {}
        self._max_keys = max_keys

    def __len__(self) -> int:
        return len(self._seen)

    def get(self, key: Hashable, stored: Any, decode: Callable[[Any], T]) -> T:
        """The decoded form of ``stored``: the remembered one while ``stored`` is unchanged."""
        found = self._seen.get(key)
        if found is not None and found[0] == stored:
            return found[1]
        value = decode(stored)
        self.put(key, stored, value)
        return value

    def last(self, key: Hashable) -> tuple[Any, T] | None:
        """The stored value last seen for ``key`` and its decoded form, if any."""
        return self._seen.get(key)

    def put(self, key: Hashable, stored: Any, value: T) -> None:
        """Remember ``value`` as the decoded form of ``stored`` (known without decoding)."""
        if len(self._seen) >= self._max_keys:
            self._seen.clear()
        self._seen[key] = (stored, value)


class TokenCache(Generic[T]):
    """Values read from a store while it answered one token: another token drops them all.

    For data the store gives a random token that it replaces after every change
    (``TransitionReads.instruments_token``): a value put under the token read *before*
    the value itself is right for as long as the store answers that token. ``None`` (the
    store has no token) is never trusted: nothing is kept under it.
    """

    __slots__ = ("_max_keys", "_token", "_values")

    def __init__(self, max_keys: int = 4096) -> None:
        self._token: str | None = None
        self._values: dict[Hashable, T] = {}
        self._max_keys = max_keys

    def __len__(self) -> int:
        return len(self._values)

    def get(self, token: str | None, key: Hashable) -> T | None:
        """The value kept for ``key`` under ``token``; ``None`` when none is (or the token
        is not the one the values were read under: they are dropped)."""
        if token != self._token:
            self._values.clear()
            self._token = None
            return None
        return self._values.get(key)

    def put(self, token: str | None, key: Hashable, value: T) -> None:
        """Keep ``value``, read after ``token`` was, for as long as the token stays."""
        if token is None:
            return
        if token != self._token or len(self._values) >= self._max_keys:
            self._values.clear()
            self._token = token
        self._values[key] = value


class DecodedRefdata:
    """The decoded accounts, instrument configs and prices of one ``Services``.

    Each memo is a ``DecodedMemo`` and follows its aliasing invariant; ``configs`` keeps
    the instrument configs by the store's token (``TokenCache``), so that a transition
    reads a config from the store once per token, not once per report.
    """

    __slots__ = ("_accounts", "_heads", "_instruments", "_prices", "_rows", "configs")

    def __init__(self) -> None:
        self.configs: TokenCache[InstrumentConfig] = TokenCache()
        self._instruments: DecodedMemo[InstrumentConfig] = DecodedMemo()
        self._prices: DecodedMemo[Prices] = DecodedMemo(max_keys=1)
        # An account document grows with its positions (tens of KB with its decoded
        # form): the accounts traded right now are enough, and this bounds the memo to a
        # few MB.
        self._accounts: DecodedMemo[Account] = DecodedMemo(max_keys=256)
        # Accounts kept as rows (``backends.state``): per account id, the stamp of the
        # rows last seen and their positions, and the account of each (stamp, header).
        self._rows: dict[str, tuple[str, tuple[Position, ...]]] = {}
        self._heads: DecodedMemo[Account] = DecodedMemo(max_keys=256)

    def account(self, account_id: str, data: Mapping[str, Any]) -> Account:
        """The decoded account document, reused while the stored document is unchanged.

        An account document carries every open position and reservation, so decoding it
        is a transition's biggest read cost; a worker usually wrote the very document it
        reads next (``remember_account``).
        """
        last = self._accounts.last(account_id)
        if last is None:
            return self._accounts.get(account_id, data, account_from_dict)
        return self._accounts.get(account_id, data, lambda doc: _account_from(doc, last))

    def remember_account(self, data: Mapping[str, Any], account: Account) -> None:
        """Record a committed account document (``account_document(account)``) and its account."""
        self._accounts.put(account.account_id, data, account)

    def account_of_head(self, account_id: str, head: Versioned) -> Account | None:
        """The account of a head read (``StateStore.get_account_head``): decoded from its
        header with the positions known for its stamp, or ``None`` when none are known
        here (read the whole account, ``whole_account``). A document without a stamp is
        whole: decoded as ``account``."""
        if head.stamp is None:
            return self.account(account_id, head.data)
        rows = self._rows.get(account_id)
        if rows is None or rows[0] != head.stamp:
            return None
        positions = rows[1]

        def from_header(stored: tuple[str, Mapping[str, Any]]) -> Account:
            last = self._heads.last(account_id)  # still the one before (a miss, ``get``)
            if last is None:
                return _header_account(stored[1], None, None, positions)
            return _header_account(stored[1], last[0][1], last[1], positions)

        return self._heads.get(account_id, (head.stamp, head.data), from_header)

    def whole_account(self, account_id: str, whole: Versioned) -> Account:
        """Decode a whole account document (``StateStore.get_account``) and, when it is kept
        as rows, remember its positions under its stamp.

        An account kept as rows is read by its head from then on (``account_of_head``), so
        its whole document, which grows with its positions, is not kept; its positions get
        their book (``domain.positionbook``) now, so the next transition writes the row it
        changed rather than the whole account again.
        """
        if whole.stamp is None:
            return self.account(account_id, whole.data)
        account = account_from_dict(whole.data)
        positions, _ = sorted_book(account.positions)
        if positions is not account.positions:
            account = replace(account, positions=positions)
        self.remember_head(whole.stamp, header_of(whole.data), account)
        return account

    def remember_head(self, stamp: str, header: Mapping[str, Any], account: Account) -> None:
        """Record a committed or read account kept as rows: its header document
        (``codec.account_header_document``), its rows' stamp and the account."""
        if len(self._rows) >= 256 and account.account_id not in self._rows:
            self._rows.clear()
        self._rows[account.account_id] = (stamp, account.positions)
        self._heads.put(account.account_id, (stamp, header), account)

    def instrument(self, group: str, symbol: str, data: Mapping[str, Any]) -> InstrumentConfig:
        """The decoded instrument config of ``group``/``symbol``."""
        return self._instruments.get((group, symbol), data, instrument_from_dict)

    def prices(self, stored: Mapping[str, Mapping[str, Any]]) -> Prices:
        """``Prices`` of the stored quotes (decoded once per change)."""
        return self._prices.get(None, stored, _prices_of)


def _account_from(data: Mapping[str, Any], last: tuple[Any, Account]) -> Account:
    """Decode an account document whose positions and reservations may be those of the
    last one seen.

    Another process (the intake reserving for an order, a worker of another kind) changed
    the header or the reservations, not the positions: the last decoded tuple is reused (one
    comparison of the lists, in C), so a large account is not decoded again and its
    positions keep their aggregates (``domain.positionbook``) and encoding
    (``codec.account_document``). Its reservations are the last ones with the one that
    changed put in or taken out (``_edited_reservations``).
    """
    positions = data.get("positions")
    if not positions or positions != last[0].get("positions"):
        return _header_account(data, last[0], last[1], None)
    return _header_account(data, last[0], last[1], last[1].positions)


def _header_account(
    data: Mapping[str, Any],
    last_data: Mapping[str, Any] | None,
    last: Account | None,
    positions: tuple[Position, ...] | None,
) -> Account:
    """Decode ``data`` with ``positions`` for its positions (``None``: decoded from it),
    its reservations taken from ``last`` where they are the same."""
    held = None
    if last_data is not None and last is not None:
        held = _edited_reservations(
            data.get("reservations"), last_data.get("reservations"), last.reservations
        )
    if positions is None and held is None:
        return account_from_dict(data)
    stripped = dict(data)
    kept: dict[str, Any] = {}
    if positions is not None:
        stripped["positions"] = []
        kept["positions"] = positions
    if held is not None:
        stripped["reservations"] = []
        kept["reservations"] = held
    return replace(account_from_dict(stripped), **kept)


def _edited_reservations(
    stored: Any, last_stored: Any, last: tuple[Reservation, ...]
) -> tuple[Reservation, ...] | None:
    """The decoded reservations of ``stored``, made from ``last`` (the decoded form of
    ``last_stored``) when the two lists are equal or differ in one item put in, taken out
    or replaced: the walk to the first difference and a comparison of the rest (in C)
    instead of every reservation decoded again. ``None`` when they differ more (or are
    not lists): decode them."""
    if not isinstance(stored, list) or not isinstance(last_stored, list):
        return None
    if len(stored) < SMALL:  # decoded whole (each item a memo hit): cheaper than the walk
        return None
    if stored == last_stored:
        return last
    grown = len(stored) - len(last_stored)
    if grown not in (-1, 0, 1):
        return None
    at = next(
        (i for i, (new, old) in enumerate(zip(stored, last_stored, strict=False)) if new != old),
        min(len(stored), len(last_stored)),
    )
    taken = 1 if grown <= 0 else 0
    put = 1 if grown >= 0 else 0
    if stored[at + put :] != last_stored[at + taken :]:
        return None
    try:
        made = tuple(decode(Reservation, item) for item in stored[at : at + put])
    except CodecError:
        return None  # the checked path decodes the whole document and says why
    return spliced(last, at, taken, made)


def _prices_of(stored: Mapping[str, Mapping[str, Any]]) -> Prices:
    return Prices({symbol: quote_of(symbol, data) for symbol, data in stored.items()})


def quote_of(symbol: str, data: Mapping[str, Any]) -> Quote:
    """A stored quote (``{"bid": "1.085", "ask": "1.0852"}``) as a ``Quote``."""
    try:
        return Quote(symbol, Decimal(str(data["bid"])), Decimal(str(data["ask"])))
    except (KeyError, InvalidOperation) as exc:
        raise StoreError("stored quote is malformed", symbol=symbol, error=repr(exc)) from exc
