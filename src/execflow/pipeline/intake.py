"""Order intake: the trading side's Python API (open, pending, modify, cancel, close, SL/TP).

Each action loads the account, instrument and prices, calls the pure rule of
``execflow.domain.intake``, and then, only when accepted:

1. commits the new order and account to the state store (version-checked; a conflict
   reloads and recomputes, a few times);
2. publishes the DB events to ``db_updates`` (message id = event id);
3. registers the request's lifecycle id, so the dispatcher can route any answer, then
   publishes the provider request to ``provider_requests`` (message id = lifecycle id);
   steps 2-3 are ``pipeline.effects.publish_effects``, shared with the workers.

A refused request (``insufficient_margin``, ``price_wrong_side``, ...) is never sent; it
is logged ``INTAKE:REFUSED``.

An action that finds the state store incomplete (it came back empty: an account or an
order missing and no completeness marker) rebuilds it first, or waits for the process
that does (``rebuild_after_outage``, behind a fence through ``db_updates``), then loads
again: nothing is read from a database that may still be behind (docs/state-rebuild.md).

Once step 1 committed, the order exists and its margin is reserved: the commit cannot be
taken back, so its effects must go out. When steps 2-3 fail (the broker or the state
store away), the action still answers *accepted* with ``send_deferred=True`` and the
send goes on in the background (``pipeline.intake_sends``). A commit that raised may
have landed all the same (a timed-out answer): ``pipeline.intake_commit`` reads it back
before the action is retried or refused. The attempts of a conflicting commit
(``intake_max_attempts``) and the wait for a lost commit answer
(``intake_commit_answer_timeout_s``) are settings.

Lifecycle ids (FIX ClOrdIDs): the first request of an order uses the order id itself, so
an order id always resolves to its account through the lifecycle index; later requests
use ``{order_id}-{action}-v{version}``, unique because the version-checked commit lets
only one request per order version through.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from execflow.backends.state import Versioned, Write
from execflow.clock import Clock, IdGenerator
from execflow.domain import intake as rules
from execflow.domain.codec import calculation_to_dict, order_from_dict, order_to_dict
from execflow.domain.enums import LegKind, OrderType, Side
from execflow.domain.models import Account, InstrumentConfig, Order, Prices
from execflow.domain.stuck import change_lifecycle_id
from execflow.errors import StoreError, VersionConflict
from execflow.logs.context import log_context
from execflow.pipeline.account_io import account_write, read_account
from execflow.pipeline.completeness import StoreIncomplete, require_complete
from execflow.pipeline.dbfence import wait_for_db_writer
from execflow.pipeline.intake_commit import LostCommitAnswers
from execflow.pipeline.intake_sends import IntakeSends
from execflow.pipeline.rebuild import rebuild_after_outage
from execflow.pipeline.retry import retry_policy
from execflow.pipeline.seed import ReferenceData
from execflow.pipeline.services import Services

__all__ = ["COMPONENT", "IntakeResult", "OrderIntake", "TimeOrderIds"]

COMPONENT = "intake"
_EPOCH = datetime(2020, 1, 1, tzinfo=UTC)


class TimeOrderIds:
    """13-digit numeric order ids: milliseconds since 2020 x 10 + instance digit.

    Strictly increasing within a process (a burst runs ahead of the clock by one per id);
    processes with different ``instance % 10`` never collide. 13 digits last until 2115.
    """

    def __init__(self, clock: Clock, instance: int = 1) -> None:
        self._clock = clock
        self._digit = instance % 10
        self._last = 0

    def new_id(self) -> str:
        """The next id."""
        now_ms = int((self._clock.now() - _EPOCH).total_seconds() * 1000)
        base = max(now_ms, self._last + 1)
        self._last = base
        return f"{base * 10 + self._digit:013d}"


class NumericIds:
    """Deterministic 13-digit ids for tests and demos: ``start``, ``start + 1``, ..."""

    def __init__(self, start: int = 3163458366000) -> None:
        self._counter = itertools.count(start)

    def new_id(self) -> str:
        """The next id."""
        return f"{next(self._counter):013d}"


@dataclass(frozen=True, slots=True)
class IntakeResult:
    """What became of one intake action."""

    action: str
    accepted: bool
    order_id: str | None
    trace_id: str
    lifecycle_id: str | None = None
    status: str | None = None
    reason: str | None = None
    detail: str = ""
    order: Order | None = None
    send_deferred: bool = False
    """Accepted and committed, but the request could not be sent yet: it is re-sent in
    the background (see the module docstring)."""


@dataclass(frozen=True, slots=True)
class _Loaded:
    account: Account
    account_read: Versioned
    instrument: InstrumentConfig | None
    prices: Prices
    order: Order | None = None
    order_version: int = 0


_Rule = Callable[[_Loaded, str, datetime], rules.IntakeDecision]


class _Refusal(Exception):
    """Internal: stop an action with a refusal reason (never escapes this module)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


class OrderIntake:
    """Place, change and close orders; see the module docstring for the sequence."""

    def __init__(self, services: Services, order_ids: IdGenerator | None = None) -> None:
        self._services = services
        self._state = services.state
        self._bus = services.bus
        self._clock = services.clock
        self._log = services.logger(COMPONENT)
        self._order_ids = order_ids or TimeOrderIds(services.clock, services.instance)
        self._refdata = ReferenceData(
            services.state, services.database, services.settings.seed_file, self._log, "INTAKE"
        )
        settings = services.settings
        retry = retry_policy(settings)
        self._max_attempts = settings.intake_max_attempts
        self._sends = IntakeSends(services, self._log, retry)
        self._commits = LostCommitAnswers(
            services.state,
            self._log,
            retry,
            settings.intake_commit_answer_timeout_s,
            services.clock,
        )

    # -- new orders ---------------------------------------------------------------------------

    async def open_market(
        self,
        account_id: str,
        symbol: str,
        side: Side | str,
        qty: Decimal | str,
        sl: Decimal | str | None = None,
        tp: Decimal | str | None = None,
    ) -> IntakeResult:
        """Send a market order (optionally with SL / TP, placed once it fills)."""
        new = rules.NewOrder(
            account_id, symbol, Side(side), OrderType.MARKET, Decimal(qty), None, _d(sl), _d(tp)
        )
        return await self._submit("open_market", new)

    async def place_pending(
        self,
        account_id: str,
        symbol: str,
        order_type: OrderType | str,
        qty: Decimal | str,
        price: Decimal | str,
        sl: Decimal | str | None = None,
        tp: Decimal | str | None = None,
    ) -> IntakeResult:
        """Send a limit or stop order resting at ``price`` (the client's level)."""
        kind = OrderType(order_type)
        side = kind.side or Side.BUY
        new = rules.NewOrder(
            account_id, symbol, side, kind, Decimal(qty), Decimal(price), _d(sl), _d(tp)
        )
        return await self._submit("place_pending", new)

    # -- changes to existing orders -------------------------------------------------------------

    async def modify_pending(self, order_id: str, price: Decimal | str) -> IntakeResult:
        """Move a resting pending order to a new price."""
        new_price = Decimal(price)

        def rule(x: _Loaded, lifecycle_id: str, now: datetime) -> rules.IntakeDecision:
            assert x.order is not None
            return rules.modify_pending(
                x.order, x.account, _need(x.instrument), x.prices, new_price, lifecycle_id, now
            )

        return await self._change("modify", order_id, rule, needs_market=True)

    async def cancel_pending(self, order_id: str) -> IntakeResult:
        """Cancel a resting pending order."""

        def rule(x: _Loaded, lifecycle_id: str, now: datetime) -> rules.IntakeDecision:
            assert x.order is not None
            return rules.cancel_pending(x.order, x.account, lifecycle_id, now)

        return await self._change("cancel", order_id, rule)

    async def close(self, order_id: str) -> IntakeResult:
        """Close an open position at market."""

        def rule(x: _Loaded, lifecycle_id: str, now: datetime) -> rules.IntakeDecision:
            assert x.order is not None
            return rules.request_close(x.order, x.account, lifecycle_id, now)

        return await self._change("close", order_id, rule)

    async def set_sl(self, order_id: str, price: Decimal | str) -> IntakeResult:
        """Place a stop loss on an open position."""
        return await self._protect(order_id, LegKind.SL, Decimal(price))

    async def set_tp(self, order_id: str, price: Decimal | str) -> IntakeResult:
        """Place a take profit on an open position."""
        return await self._protect(order_id, LegKind.TP, Decimal(price))

    async def cancel_sl(self, order_id: str) -> IntakeResult:
        """Cancel the live stop loss of an open position."""
        return await self._unprotect(order_id, LegKind.SL)

    async def cancel_tp(self, order_id: str) -> IntakeResult:
        """Cancel the live take profit of an open position."""
        return await self._unprotect(order_id, LegKind.TP)

    async def _protect(self, order_id: str, leg: LegKind, price: Decimal) -> IntakeResult:
        def rule(x: _Loaded, lifecycle_id: str, now: datetime) -> rules.IntakeDecision:
            assert x.order is not None
            return rules.set_protection(
                x.order, x.account, _need(x.instrument), x.prices, leg, price, lifecycle_id, now
            )

        return await self._change(f"set_{leg.value.lower()}", order_id, rule, needs_market=True)

    async def _unprotect(self, order_id: str, leg: LegKind) -> IntakeResult:
        def rule(x: _Loaded, lifecycle_id: str, now: datetime) -> rules.IntakeDecision:
            assert x.order is not None
            return rules.cancel_protection(x.order, x.account, leg, lifecycle_id, now)

        return await self._change(f"cancel_{leg.value.lower()}", order_id, rule)

    # -- the sequence ---------------------------------------------------------------------------

    async def _fresh_prices(self) -> Prices:
        """The stored quotes, those older than ``quote_max_age_s`` marked stale."""
        prices = await self._refdata.prices()
        max_age_s = self._services.settings.quote_max_age_s
        return prices.fresh_at(self._services.clock.now(), max_age_s)

    async def _submit(self, action: str, new: rules.NewOrder) -> IntakeResult:
        order_id = self._order_ids.new_id()

        async def load() -> _Loaded:
            account, read = await self._account(new.account_id)
            instrument = await self._refdata.instrument(account.group, new.symbol)
            return _Loaded(account, read, instrument, await self._fresh_prices())

        def rule(x: _Loaded, lifecycle_id: str, now: datetime) -> rules.IntakeDecision:
            return rules.submit_order(
                new, x.account, x.instrument, x.prices, order_id, lifecycle_id, now
            )

        fields: dict[str, object] = {
            "user": new.account_id,
            "symbol": new.symbol,
            "side": new.side.value,
            "order_type": new.order_type.value,
            "qty": new.qty,
            "price": new.price,
            "sl": new.sl,
            "tp": new.tp,
        }
        return await self._execute(action, order_id, load, rule, lambda _x: order_id, fields)

    async def _change(
        self, action: str, order_id: str, rule: _Rule, *, needs_market: bool = False
    ) -> IntakeResult:
        async def load() -> _Loaded:
            account_id = await self._account_of(order_id)
            found = await self._state.get_order(account_id, order_id)
            if found is None:
                # unknown, or lost with the store: a store that came back empty is
                # rebuilt first (``StoreIncomplete``), the order is not refused as unknown
                await require_complete(self._state, "order", order_id)
                raise _Refusal("unknown_order", order_id)
            order = order_from_dict(found.data)
            account, read = await self._account(account_id)
            instrument = None
            if needs_market:
                instrument = await self._refdata.instrument(order.group, order.symbol)
                if instrument is None:
                    raise _Refusal("unknown_symbol", order.symbol)
            prices = await self._fresh_prices() if needs_market else Prices()
            return _Loaded(account, read, instrument, prices, order, found.version)

        def lifecycle_id(x: _Loaded) -> str:
            assert x.order is not None
            return change_lifecycle_id(order_id, action, x.order.version + 1)

        return await self._execute(action, order_id, load, rule, lifecycle_id, {})

    async def _execute(
        self,
        action: str,
        order_id: str,
        load: Callable[[], Awaitable[_Loaded]],
        rule: _Rule,
        lifecycle_id: Callable[[_Loaded], str],
        fields: dict[str, object],
    ) -> IntakeResult:
        trace_id = self._services.ids.new_id()
        started = self._clock.monotonic()
        shown = {k: v for k, v in fields.items() if v is not None}
        with log_context(trace_id=trace_id, order_id=order_id):
            self._log.info("INTAKE:RECEIVED", action=action, **shown)
            try:
                for _attempt in range(self._max_attempts):
                    try:
                        loaded = await load()
                    except StoreIncomplete:
                        # The store came back empty: rebuild it (or wait for the process
                        # that does), never serve this action from a database behind.
                        await self._rebuilt()
                        loaded = await load()
                    lid = lifecycle_id(loaded)
                    decided = rule(loaded, lid, self._clock.now())
                    if isinstance(decided, rules.Refused):
                        raise _Refusal(decided.reason, decided.detail)
                    try:
                        await self._commit(loaded, decided)
                    except StoreError as exc:
                        if not await self._commits.landed(loaded.order_version, decided, exc):
                            if not isinstance(exc, VersionConflict):
                                raise
                            key = exc.fields.get("key")
                            self._log.info("INTAKE:CONFLICT", action=action, key=key)
                            continue
                    deferred = not await self._sends.try_send(decided, trace_id)
                    return self._sent(action, decided, trace_id, started, deferred)
                raise _Refusal("busy", f"state changed {self._max_attempts} times meanwhile")
            except _Refusal as refusal:
                return self._refused(action, order_id, trace_id, refusal, shown)
            except Exception as exc:
                self._log.failure("INTAKE:ERROR", exc=exc, action=action)
                raise

    async def _rebuilt(self) -> None:
        """Return once the state store is complete again (``pipeline.rebuild``)."""
        services = self._services
        await rebuild_after_outage(
            services.state,
            services.database,
            services.settings.seed_file,
            self._log,
            fence=lambda: wait_for_db_writer(services, self._log),
            clock=services.clock,
        )

    async def _commit(self, loaded: _Loaded, accepted: rules.Accepted) -> None:
        order = accepted.order
        writes = [Write("order", order.order_id, loaded.order_version, order_to_dict(order))]
        account = accepted.account
        planned = (
            account_write(loaded.account_read, loaded.account, account)
            if account != loaded.account
            else None
        )
        if planned is not None:
            writes.append(planned.write)
        await self._state.commit(account.account_id, writes)
        if planned is not None:
            # the worker answering this request reads this very account: decode it never
            planned.remember(self._services.decoded)

    # -- deferred sends (pipeline.intake_sends) ---------------------------------------------

    @property
    def deferred(self) -> int:
        """Committed actions whose request is still waiting to be sent."""
        return self._sends.deferred

    async def flush(self, timeout_s: float | None = None) -> int:
        """Wait until every deferred send went out (at most ``timeout_s``); how many remain."""
        return await self._sends.flush(timeout_s)

    async def shutdown(self, timeout_s: float = 30.0) -> None:
        """Give deferred sends ``timeout_s`` to go out; log CRITICAL what never went."""
        await self._sends.shutdown(timeout_s)

    # -- loading --------------------------------------------------------------------------------

    async def _account(self, account_id: str) -> tuple[Account, Versioned]:
        """The account and the read it came from (its head, unless this process does not
        know its positions: then the whole document, ``pipeline.account_io``)."""

        async def whole() -> Versioned:
            found = await self._refdata.account(account_id)
            if found is None:
                raise _Refusal("unknown_account", account_id)
            return found

        head = await self._state.get_account_head(account_id)
        return await read_account(
            self._services.decoded, account_id, head if head is not None else await whole(), whole
        )

    async def _account_of(self, order_id: str) -> str:
        """The account of an order: its first lifecycle record, else its DB snapshot."""
        record = await self._state.get_lifecycle(order_id)
        if record is not None and isinstance(record.get("account_id"), str):
            return str(record["account_id"])
        stored = await self._services.database.get_order(order_id)
        if stored is None:
            raise _Refusal("unknown_order", order_id)
        return stored.account_id

    # -- outcome lines -----------------------------------------------------------------------------

    def _sent(
        self,
        action: str,
        accepted: rules.Accepted,
        trace_id: str,
        started: float,
        deferred: bool = False,
    ) -> IntakeResult:
        order = accepted.order
        request = accepted.request
        for calc in accepted.calculations:
            data = calculation_to_dict(calc)
            name = str(data.pop("name"))
            self._log.calculation(name, **data)
        self._log.success(
            "INTAKE:ACCEPTED" if deferred else "INTAKE:SENT",
            processing_time_ms=round((self._clock.monotonic() - started) * 1000, 3),
            action=action,
            user=order.account_id,
            symbol=order.symbol,
            side=order.side.value,
            qty=order.qty,
            status=order.status.value,
            kind=request.kind.value,
            lifecycle_id=request.lifecycle_id,
            reserved_margin=order.reserved_margin,
            free_margin=accepted.account.free_margin,
            **({"send_deferred": True} if deferred else {}),
        )
        self._log.stats.incr(f"sent.{action}")
        return IntakeResult(
            action=action,
            accepted=True,
            order_id=order.order_id,
            trace_id=trace_id,
            lifecycle_id=request.lifecycle_id,
            status=order.status.value,
            order=order,
            send_deferred=deferred,
        )

    def _refused(
        self,
        action: str,
        order_id: str,
        trace_id: str,
        refusal: _Refusal,
        fields: dict[str, object],
    ) -> IntakeResult:
        extra = {"detail": refusal.detail} if refusal.detail else {}
        self._log.info("INTAKE:REFUSED", action=action, reason=refusal.reason, **extra, **fields)
        self._log.stats.incr(f"refused.{refusal.reason}")
        return IntakeResult(
            action=action,
            accepted=False,
            order_id=order_id,
            trace_id=trace_id,
            reason=refusal.reason,
            detail=refusal.detail,
        )


def _d(value: Decimal | str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _need(instrument: InstrumentConfig | None) -> InstrumentConfig:
    if instrument is None:
        raise _Refusal("unknown_symbol")
    return instrument
