"""Per-symbol aggregates of an account's open positions, so a transition costs what it changed.

``used_margin_executed`` (DESIGN §5) is the sum over symbols of ``money.hedged_symbol_margin``:
per symbol, the largest per-lot margin times the larger of the BUY and the SELL lots,
booked. Walking every position again on each open or close made a report on an account
with 1,000 positions cost several times one on an account with one
(``bench/account_size.py``). A ``PositionBook`` keeps per symbol the BUY and SELL lots and
counts, the largest per-lot margin and how many positions hold it, and that symbol's booked
margin; opening or closing a position re-derives its symbol only (the whole symbol is walked
again only when the last position holding its largest per-lot margin closes), and the
executed margin is the sum of the per-symbol margins. The figures are the full walk's, to
the digit: lots are added and subtracted exactly, a side with no position left is ``ZERO``
as the walk's empty sum is, and each symbol is booked by the same ``book``.

Books are immutable and memoised by the identity of the (sorted by order id) positions
tuple they describe, as the codec memoises encodings: the account a worker committed is the
object it reads next (``pipeline.decoded``), so the next transition finds its book; a tuple
not seen before (decoded afresh, built by hand) gets one by one walk. Each entry keeps its
tuple alive, so an account's chain keeps two: its newest tuple and the one it was made from
(the state a failed commit retries from); remembering a tuple forgets its grandparent's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from execflow.domain.editmemo import Edit, EditMemo, ascending_ids, by_order_id
from execflow.domain.enums import Side
from execflow.domain.models import ZERO, Position
from execflow.domain.money import hedged_margin

__all__ = [
    "PositionBook",
    "SymbolLots",
    "book_of",
    "edit_of",
    "remember",
    "sorted_book",
]

Positions = tuple[Position, ...]


_BOOKS: EditMemo[PositionBook] = EditMemo(512)
"""Books remembered (two per account traded, ``remember``); a full memo starts over."""


@dataclass(frozen=True, slots=True)
class SymbolLots:
    """One symbol's open lots by side, its largest per-lot margin, and its booked margin."""

    buy: Decimal
    sell: Decimal
    buys: int
    sells: int
    top: Decimal
    at_top: int
    margin: Decimal


def _symbol_lots(positions: Iterable[Position]) -> SymbolLots | None:
    """The aggregates of one symbol's positions by a walk (``None`` when there are none)."""
    items = list(positions)
    if not items:
        return None
    buys = [p.lots for p in items if p.side is Side.BUY]
    sells = [p.lots for p in items if p.side is Side.SELL]
    top = max(p.margin_per_lot_usd for p in items)
    at_top = sum(1 for p in items if p.margin_per_lot_usd == top)
    return _settled(sum(buys, ZERO), sum(sells, ZERO), len(buys), len(sells), top, at_top)


def _added(item: SymbolLots | None, position: Position) -> SymbolLots:
    lots, per_lot = position.lots, position.margin_per_lot_usd
    if item is None:  # the walk's sums start at ZERO
        item = SymbolLots(ZERO, ZERO, 0, 0, per_lot, 0, ZERO)
    buy, sell, buys, sells = item.buy, item.sell, item.buys, item.sells
    if position.side is Side.BUY:
        buy, buys = buy + lots, buys + 1
    else:
        sell, sells = sell + lots, sells + 1
    top, at_top = item.top, item.at_top
    if per_lot > top:
        top, at_top = per_lot, 1
    elif per_lot == top:
        at_top += 1
    return _settled(buy, sell, buys, sells, top, at_top)


def _settled(
    buy: Decimal, sell: Decimal, buys: int, sells: int, top: Decimal, at_top: int
) -> SymbolLots:
    return SymbolLots(buy, sell, buys, sells, top, at_top, hedged_margin(top, buy, sell))


@dataclass(frozen=True, slots=True)
class PositionBook:
    """The per-symbol aggregates of one sorted positions tuple and its executed margin."""

    symbols: Mapping[str, SymbolLots]
    executed: Decimal

    @classmethod
    def of(cls, positions: Positions) -> PositionBook:
        """The book of ``positions`` by one walk."""
        by_symbol: dict[str, list[Position]] = {}
        for p in positions:
            by_symbol.setdefault(p.symbol, []).append(p)
        symbols = {s: lots for s, ps in by_symbol.items() if (lots := _symbol_lots(ps))}
        return cls.of_symbols(symbols)

    @classmethod
    def of_symbols(cls, symbols: dict[str, SymbolLots]) -> PositionBook:
        """A book of these aggregates (a handful of symbols: summed again each time)."""
        return cls(symbols, sum((s.margin for s in symbols.values()), ZERO))

    def opened(self, position: Position) -> PositionBook:
        """This book with ``position`` opened."""
        symbols = dict(self.symbols)
        symbols[position.symbol] = _added(symbols.get(position.symbol), position)
        return PositionBook.of_symbols(symbols)

    def closed(self, position: Position, remaining: Positions) -> PositionBook:
        """This book with ``position`` closed; ``remaining`` are the positions left."""
        symbols = dict(self.symbols)
        item = symbols[position.symbol]
        buy, sell, buys, sells = item.buy, item.sell, item.buys, item.sells
        if position.side is Side.BUY:
            buys -= 1
            buy = buy - position.lots if buys else ZERO
        else:
            sells -= 1
            sell = sell - position.lots if sells else ZERO
        at_top = item.at_top - (position.margin_per_lot_usd == item.top)
        if not buys and not sells:
            del symbols[position.symbol]
        elif at_top:
            symbols[position.symbol] = _settled(buy, sell, buys, sells, item.top, at_top)
        else:  # the largest per-lot margin closed: walk the symbol's positions again
            walked = _symbol_lots(p for p in remaining if p.symbol == position.symbol)
            assert walked is not None  # the symbol still has a position (counts above)
            symbols[position.symbol] = walked
        return PositionBook.of_symbols(symbols)


def book_of(positions: Positions) -> PositionBook | None:
    """The remembered book of exactly this tuple (sorted, one position per order id)."""
    return _BOOKS.get(positions)


def sorted_book(positions: Iterable[Position]) -> tuple[Positions, PositionBook]:
    """The positions sorted by order id and their book (remembered when ids are unique)."""
    if isinstance(positions, tuple):
        found = book_of(positions)
        if found is not None:
            return positions, found
        if ascending_ids(positions):  # a decoded account's rows come sorted: kept as they are
            made = PositionBook.of(positions)
            remember(positions, made)
            return positions, made
    ordered = by_order_id(positions)
    made = PositionBook.of(ordered)
    if ascending_ids(ordered):
        remember(ordered, made)
    return ordered, made


def remember(positions: Positions, made: PositionBook, edit: Edit | None = None) -> None:
    """Record ``made`` as the book of ``positions`` (sorted, unique order ids), and how
    ``positions`` was made from an earlier tuple when it was (``EditMemo.remember``)."""
    _BOOKS.remember(positions, made, edit)


def edit_of(positions: Positions) -> Edit | None:
    """How this exact tuple was made from an earlier one, when remembered."""
    return _BOOKS.edit_of(positions)
