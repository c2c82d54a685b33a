"""Reference data from a seed file: accounts, instrument configs per group, initial prices.

Format (TOML or JSON, same structure; decimals as strings or numbers, never floats in
effect: TOML and JSON numbers are parsed straight to ``Decimal``)::

    [[accounts]]                      # one table per account
    account_id = "live:6"             # "{user_type}:{user_id}"
    currency = "USD"
    balance = "10000.00"
    leverage = 100
    group = "standard"

    [symbols.EURUSD]                  # what every group shares
    contract_size = 100000
    profit_currency = "USD"
    instrument_type = "forex"         # forex | metal | index | crypto
    spread_pip = "0.00001"

    [groups.standard.EURUSD]          # a group's own conditions, merged over symbols.EURUSD
    spread = 12
    commission_rate = "3.5"
    commission_type = "EVERY_TRADE"   # EVERY_TRADE | ENTRY | EXIT
    commission_value_type = "PER_LOT" # PER_LOT | PERCENT

    [prices.EURUSD]                   # raw LP quote
    bid = "1.08500"
    ask = "1.08502"

Applying a seed never overwrites money: an account already in the state store is kept
as it is, and one missing from the state store but present in the database is cached
again from its database snapshot (the durable record wins over the file). Instrument
configs and prices are (re)written.
"""

from __future__ import annotations

import asyncio
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from execflow.backends.database import AccountRecord, Database
from execflow.backends.state import StateStore, Versioned, Write
from execflow.domain.codec import (
    CodecError,
    account_from_dict,
    account_to_dict,
    instrument_from_dict,
    instrument_to_dict,
)
from execflow.domain.models import Account, InstrumentConfig, Prices, Quote
from execflow.errors import ConfigError, VersionConflict
from execflow.logs.events import EventLogger
from execflow.pipeline.completeness import mark_complete, require_complete

__all__ = [
    "ReferenceData",
    "Seed",
    "SeedError",
    "SeedReport",
    "apply_seed",
    "cache_account",
    "load_seed",
    "parse_seed",
    "prices_from_store",
    "quote_from_dict",
    "quote_to_dict",
    "read_seed",
]

_ACCOUNT_KEYS = frozenset({"account_id", "currency", "balance", "leverage", "group"})


class SeedError(ConfigError):
    """The seed file is unreadable or invalid; the message says where."""


@dataclass(frozen=True, slots=True)
class Seed:
    """Validated reference data."""

    accounts: tuple[Account, ...]
    instruments: tuple[InstrumentConfig, ...]
    quotes: tuple[Quote, ...]

    def instrument(self, group: str, symbol: str) -> InstrumentConfig | None:
        """The config of ``symbol`` in ``group``, or ``None``."""
        for item in self.instruments:
            if item.group == group and item.symbol == symbol:
                return item
        return None


@dataclass(slots=True)
class SeedReport:
    """What ``apply_seed`` did."""

    accounts_created: list[str] = field(default_factory=list)
    accounts_kept: list[str] = field(default_factory=list)
    accounts_recached: list[str] = field(default_factory=list)
    instruments: int = 0
    prices: int = 0


def quote_to_dict(quote: Quote) -> dict[str, str]:
    """The state store's price document: ``{"bid": "...", "ask": "..."}``."""
    return {"bid": str(quote.bid), "ask": str(quote.ask)}


def quote_from_dict(symbol: str, data: Mapping[str, Any]) -> Quote:
    """Decode a price document (``ValueError`` when malformed)."""
    try:
        return Quote(symbol, Decimal(str(data["bid"])), Decimal(str(data["ask"])), quote_time(data))
    except (KeyError, ArithmeticError) as exc:
        raise ValueError(f"malformed price of {symbol}: {dict(data)!r}") from exc


def quote_time(data: Mapping[str, Any]) -> datetime | None:
    """The ``time`` of a price document (ISO 8601, UTC); None when absent or unreadable."""
    raw = data.get("time")
    if not isinstance(raw, str):
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def prices_from_store(documents: Mapping[str, Mapping[str, Any]]) -> Prices:
    """``Prices`` from ``StateStore.get_prices()``; malformed quotes are left out."""
    quotes = []
    for symbol, data in documents.items():
        try:
            quotes.append(quote_from_dict(symbol, data))
        except ValueError:
            continue
    return Prices.of(*quotes)


# -- parsing ----------------------------------------------------------------------------------


def load_seed(path: Path) -> Seed:
    """Read and validate a seed file (``.toml`` or ``.json``); blocking, call off the loop."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SeedError(f"cannot read seed file {path}: {exc.strerror}", path=str(path)) from exc
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            data = tomllib.loads(raw.decode("utf-8"), parse_float=Decimal)
        elif suffix == ".json":
            data = json.loads(raw, parse_float=Decimal, parse_int=Decimal)
        else:
            raise SeedError(f"seed file {path}: expected .toml or .json", path=str(path))
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SeedError(f"seed file {path} is not valid {suffix[1:]}: {exc}") from exc
    return parse_seed(data)


async def read_seed(path: Path) -> Seed:
    """``load_seed`` in a worker thread (file I/O never runs on the event loop)."""
    return await asyncio.to_thread(load_seed, path)


def parse_seed(data: Mapping[str, Any]) -> Seed:
    """Validate the decoded document (see the module docstring for the structure)."""
    unknown = set(data) - {"accounts", "symbols", "groups", "prices"}
    if unknown:
        raise SeedError(f"seed: unknown top-level keys {sorted(unknown)}")
    instruments = _instruments(_table(data, "symbols"), _table(data, "groups"))
    groups = {i.group for i in instruments}
    accounts = tuple(_account(i, item, groups) for i, item in enumerate(data.get("accounts", [])))
    ids = [a.account_id for a in accounts]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise SeedError(f"seed: duplicate accounts {duplicates}")
    quotes = tuple(_quote(symbol, item) for symbol, item in _table(data, "prices").items())
    return Seed(accounts, instruments, quotes)


def _table(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise SeedError(f"seed: {key} must be a table")
    return value


def _text(value: Any) -> Any:
    """Numbers become their exact decimal text (what the codec expects)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, Decimal | int):
        return str(value)
    return value


def _instruments(
    symbols: Mapping[str, Any], groups: Mapping[str, Any]
) -> tuple[InstrumentConfig, ...]:
    out = []
    for group, table in groups.items():
        if not isinstance(table, Mapping):
            raise SeedError(f"seed: groups.{group} must be a table")
        for symbol, own in table.items():
            base = symbols.get(symbol)
            if base is None:
                raise SeedError(f"seed: groups.{group}.{symbol}: no [symbols.{symbol}] table")
            merged = {k: _text(v) for k, v in {**base, **own}.items()}
            try:
                config = instrument_from_dict({**merged, "group": group, "symbol": symbol})
            except CodecError as exc:
                raise SeedError(f"seed: groups.{group}.{symbol}: {exc}") from exc
            if config.contract_size <= 0 or config.spread < 0 or config.spread_pip < 0:
                raise SeedError(f"seed: groups.{group}.{symbol}: sizes and spreads must be >= 0")
            out.append(config)
    return tuple(out)


def _account(index: int, item: Any, groups: set[str]) -> Account:
    where = f"seed: accounts[{index}]"
    if not isinstance(item, Mapping):
        raise SeedError(f"{where} must be a table")
    unknown = set(item) - _ACCOUNT_KEYS
    if unknown:
        raise SeedError(f"{where}: unknown keys {sorted(unknown)}")
    try:
        account = account_from_dict({k: _text(v) for k, v in item.items()})
    except CodecError as exc:
        raise SeedError(f"{where}: {exc}") from exc
    user_type, _, user_id = account.account_id.partition(":")
    if not user_type or not user_id:
        raise SeedError(f"{where}: account_id must look like 'live:6', got {account.account_id!r}")
    if account.balance < 0 or account.leverage <= 0:
        raise SeedError(f"{where}: balance must be >= 0 and leverage > 0")
    if account.group not in groups:
        raise SeedError(f"{where}: group {account.group!r} has no instruments")
    return account


def _quote(symbol: str, item: Any) -> Quote:
    if not isinstance(item, Mapping):
        raise SeedError(f"seed: prices.{symbol} must be a table")
    try:
        quote = quote_from_dict(symbol, {k: _text(v) for k, v in item.items()})
    except ValueError as exc:
        raise SeedError(f"seed: prices.{symbol}: needs decimal bid and ask") from exc
    if quote.bid <= 0 or quote.ask < quote.bid:
        raise SeedError(f"seed: prices.{symbol}: need 0 < bid <= ask")
    return quote


# -- applying ---------------------------------------------------------------------------------


async def apply_seed(seed: Seed, state: StateStore, database: Database) -> SeedReport:
    """Write the seed to the state store and the accounts to the database (see module doc)."""
    report = SeedReport()
    # With no account in the database there is nothing to rebuild: once seeded, the store
    # is complete. Otherwise only a rebuild (or a process start) may say so.
    fresh = not await database.list_accounts()
    for instrument in seed.instruments:
        await state.put_instrument(
            instrument.group, instrument.symbol, instrument_to_dict(instrument)
        )
        report.instruments += 1
    for quote in seed.quotes:
        await state.put_price(quote.symbol, quote_to_dict(quote))
        report.prices += 1
    new_records = []
    for account in seed.accounts:
        if await state.get_account(account.account_id) is not None:
            report.accounts_kept.append(account.account_id)
            continue
        stored = await database.get_account(account.account_id)
        if stored is not None:
            if await cache_account(state, stored.account_id, dict(stored.data)):
                report.accounts_recached.append(account.account_id)
            else:
                report.accounts_kept.append(account.account_id)
            continue
        data = account_to_dict(account)
        if await cache_account(state, account.account_id, data):
            new_records.append(AccountRecord(account.account_id, account.version, data))
            report.accounts_created.append(account.account_id)
        else:
            report.accounts_kept.append(account.account_id)
    await database.upsert_accounts(new_records)
    if fresh:
        await mark_complete(state)
    return report


async def cache_account(state: StateStore, account_id: str, data: dict[str, Any]) -> bool:
    """Create the account document if absent; ``False`` when another writer was first."""
    try:
        await state.commit(account_id, [Write("account", account_id, 0, data)])
    except VersionConflict:
        return False
    return True


# -- reference data with fallback ---------------------------------------------------------------


class ReferenceData:
    """Accounts and instrument configs read through the state store, with fallbacks.

    An account missing from the state store is loaded from its database snapshot and
    cached again (only while the store is complete: ``pipeline.completeness``); an
    instrument config missing from it is loaded from the seed file
    (``settings.seed_file``) and cached again. Each fallback is logged
    (``<COMPONENT>:FALLBACK``) on the caller's logger.
    """

    def __init__(
        self,
        state: StateStore,
        database: Database,
        seed_file: Path | None,
        log: EventLogger,
        tag_prefix: str,
    ) -> None:
        self._state = state
        self._database = database
        self._seed_file = seed_file
        self._log = log
        self._tag = f"{tag_prefix}:FALLBACK"

    async def account(self, account_id: str) -> Versioned | None:
        """The account document (re-cached from the database when missing), or ``None``."""
        found = await self._state.get_account(account_id)
        if found is not None:
            return found
        stored = await self._database.get_account(account_id)
        if stored is None:
            return None
        await require_complete(self._state, "account", account_id)
        await cache_account(self._state, account_id, dict(stored.data))
        self._log.warning(
            self._tag, what="account", user=account_id, source="database", version=stored.version
        )
        return await self._state.get_account(account_id)

    async def instrument(self, group: str, symbol: str) -> InstrumentConfig | None:
        """The instrument config (re-cached from the seed file when missing), or ``None``."""
        found = await self._state.get_instrument(group, symbol)
        if found is not None:
            return instrument_from_dict(found)
        if self._seed_file is None:
            return None
        seed = await read_seed(self._seed_file)
        config = seed.instrument(group, symbol)
        if config is None:
            return None
        await self._state.put_instrument(group, symbol, instrument_to_dict(config))
        self._log.warning(
            self._tag,
            what="instrument",
            group=group,
            symbol=symbol,
            source="seed_file",
            path=str(self._seed_file),
        )
        return config

    async def prices(self) -> Prices:
        """Every latest quote."""
        return prices_from_store(await self._state.get_prices())
