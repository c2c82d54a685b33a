"""Loading what a transition reads: account, instrument config, prices.

The state store is the fast source. An account it lost is loaded from the database (the
durable record) and cached again, with a ``FALLBACK`` line, once the store is complete
again (``pipeline.completeness``: never while a rebuild is due); an instrument config or
a price it lacks is a retryable ``MissingReferenceData`` (the database keeps neither: they
come from the seed file and the price feed). An instrument config read once is kept in
the process while the store answers the same instrument configs' token
(``load_instrument``). Decoding goes through the memo the ``Services`` owns
(``services.decoded``, ``pipeline.decoded``).
"""

from __future__ import annotations

from execflow.backends.state import Versioned, Write
from execflow.domain.models import InstrumentConfig, Prices
from execflow.errors import StoreError, VersionConflict
from execflow.logs.events import EventLogger
from execflow.pipeline.completeness import require_complete
from execflow.pipeline.services import Services

__all__ = ["MissingReferenceData", "load_account", "load_instrument", "load_prices"]


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


async def load_instrument(
    services: Services, group: str, symbol: str, token: str | None = None
) -> InstrumentConfig:
    """The instrument config of ``group``/``symbol``; ``MissingReferenceData`` when absent.

    ``token``: the instrument configs' token the caller read before (``TransitionReads``).
    The config read under a token is kept in the process and answered without a store
    read while the token stays the same; ``None`` reads the store every time.
    """
    configs = services.decoded.configs
    kept = configs.get(token, (group, symbol))
    if kept is not None:
        return kept
    data = await services.state.get_instrument(group, symbol)
    if data is None:
        raise MissingReferenceData(
            "instrument config is not in the state store (the database keeps none: "
            "load the seed file)",
            group=group,
            symbol=symbol,
        )
    config = services.decoded.instrument(group, symbol, data)
    configs.put(token, (group, symbol), config)
    return config


async def load_prices(services: Services) -> Prices:
    """Every latest quote (a transition may need any of them to convert to USD)."""
    return services.decoded.prices(await services.state.get_prices())
