"""Loading what a transition reads: account, instrument config, prices.

The state store is the fast source. An account it lost is loaded from the database
(the durable record) and cached again, with a ``FALLBACK`` line, once the store is
complete again (``pipeline.completeness``: never while a rebuild is due); an instrument config
or a price it lacks is a retryable ``MissingReferenceData`` (the database keeps
neither: they come from the seed file and the price feed).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from execflow.backends.state import Versioned, Write
from execflow.domain.codec import account_from_dict, instrument_from_dict
from execflow.domain.models import Account, InstrumentConfig, Prices, Quote
from execflow.errors import StoreError, VersionConflict
from execflow.logs.events import EventLogger
from execflow.pipeline.completeness import require_complete
from execflow.pipeline.services import Services

__all__ = [
    "MissingReferenceData",
    "account_of",
    "load_account",
    "load_instrument",
    "load_prices",
    "prices_of",
    "quote_of",
    "remember_account",
]


class MissingReferenceData(StoreError):
    """Reference data a transition needs is nowhere to be found (yet): retry later."""


async def load_account(
    services: Services, account_id: str, log: EventLogger, tag: str
) -> Versioned:
    """The account document; from the database (cached back, logged) when the store lost it."""
    doc = await services.state.get_account(account_id)
    if doc is not None:
        return doc
    record = await services.database.get_account(account_id)
    if record is None:
        raise MissingReferenceData(
            "account is neither in the state store nor in the database", account_id=account_id
        )
    await require_complete(services.state, "account", account_id)
    log.warning(
        f"{tag}:FALLBACK",
        what="account",
        source="database",
        account_id=account_id,
        db_version=record.version,
    )
    try:
        await services.state.commit(account_id, [Write("account", account_id, 0, record.data)])
    except VersionConflict:
        # Another consumer cached it first: theirs is as good as ours, read it below.
        log.debug(f"{tag}:FALLBACK_RACE", what="account", account_id=account_id)
    doc = await services.state.get_account(account_id)
    if doc is None:
        raise MissingReferenceData("account vanished while being cached", account_id=account_id)
    return doc


class _LastDecoded:
    """The decoded form of the last stored value seen per key (reference data changes
    rarely and is read by every transition: decode it once per change, not per message).

    Keyed by content, so it is right for any store and any process; an unchanged entry
    costs one dict comparison.
    """

    def __init__(self, max_keys: int = 4096) -> None:
        self._seen: dict[Any, tuple[Any, Any]] = {}
        self._max_keys = max_keys

    def get(self, key: Any, stored: Any, decode: Any) -> Any:
        found = self._seen.get(key)
        if found is not None and found[0] == stored:
            return found[1]
        value = decode(stored)
        if len(self._seen) >= self._max_keys:
            self._seen.clear()
        self._seen[key] = (stored, value)
        return value

    def put(self, key: Any, stored: Any, value: Any) -> None:
        """Remember ``value`` as the decoded form of ``stored`` (known without decoding)."""
        if len(self._seen) >= self._max_keys:
            self._seen.clear()
        self._seen[key] = (stored, value)


_instruments = _LastDecoded()
_prices = _LastDecoded()
# An account document grows with its positions (tens of KB with its decoded form): the
# accounts traded right now are enough, and this bounds the memo to a few MB.
_accounts = _LastDecoded(max_keys=256)


def account_of(account_id: str, data: Mapping[str, Any]) -> Account:
    """The decoded account document, reused while the stored document is unchanged.

    An account document carries every open position and reservation, so decoding it
    is a transition's biggest read cost; a worker usually wrote the very document it
    reads next (``remember_account``). The content comparison keeps this right for any
    store, any process, and any writer in between.
    """
    account: Account = _accounts.get(account_id, data, account_from_dict)
    return account


def remember_account(data: Mapping[str, Any], account: Account) -> None:
    """Record a committed account document and the account it encodes.

    ``data`` must be ``account_to_dict(account)`` and stay unmodified afterwards (it is
    compared with what the store returns later).
    """
    _accounts.put(account.account_id, data, account)


async def load_instrument(services: Services, group: str, symbol: str) -> InstrumentConfig:
    """The instrument config of ``group``/``symbol``; ``MissingReferenceData`` when absent."""
    data = await services.state.get_instrument(group, symbol)
    if data is None:
        raise MissingReferenceData(
            "instrument config is not in the state store (the database keeps none: "
            "load the seed file)",
            group=group,
            symbol=symbol,
        )
    instrument: InstrumentConfig = _instruments.get((group, symbol), data, instrument_from_dict)
    return instrument


async def load_prices(services: Services) -> Prices:
    """Every latest quote (a transition may need any of them to convert to USD)."""
    return prices_of(await services.state.get_prices())


def prices_of(stored: Mapping[str, Mapping[str, Any]]) -> Prices:
    """``Prices`` of the stored quotes (decoded once per change)."""
    prices: Prices = _prices.get(None, stored, _prices_of)
    return prices


def _prices_of(stored: Mapping[str, Mapping[str, Any]]) -> Prices:
    return Prices({symbol: quote_of(symbol, data) for symbol, data in stored.items()})


def quote_of(symbol: str, data: Mapping[str, Any]) -> Quote:
    """A stored quote (``{"bid": "1.085", "ask": "1.0852"}``) as a ``Quote``."""
    try:
        return Quote(symbol, Decimal(str(data["bid"])), Decimal(str(data["ask"])))
    except (KeyError, InvalidOperation) as exc:
        raise StoreError("stored quote is malformed", symbol=symbol, error=repr(exc)) from exc
