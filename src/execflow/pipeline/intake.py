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
store away), the action still answers *accepted* with ``send_deferred=True``, the send is
logged ``INTAKE:SEND_DEFERRED`` and retried in the background with the error-retry
backoff until it goes through (``INTAKE:RESENT``). Re-publishing is harmless: message ids
are deterministic, the lifecycle registration is idempotent, and the LP answers a re-sent
ClOrdID once. ``shutdown()`` (or ``flush()``) waits for the deferred sends; what is still
unsent when it gives up is logged CRITICAL with its order ids, for an operator to
reconcile (the deferred sends live in this process's memory, not in a durable outbox).

Lifecycle ids (FIX ClOrdIDs): the first request of an order uses the order id itself, so
an order id always resolves to its account through the lifecycle index; later requests
use ``{order_id}-{action}-v{version}``, unique because the version-checked commit lets
only one request per order version through.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from time import perf_counter
from typing import Any

import orjson

from execflow.backends.state import Versioned, Write
from execflow.clock import Clock, IdGenerator
from execflow.domain import intake as rules
from execflow.domain.codec import (
    account_to_dict,
    calculation_to_dict,
    order_from_dict,
    order_to_dict,
)
from execflow.domain.effects import Effect, LpRequest
from execflow.domain.enums import LegKind, OrderType, Side
from execflow.domain.models import Account, InstrumentConfig, Order, Prices
from execflow.domain.stuck import change_lifecycle_id
from execflow.errors import ExecflowError, StoreError, VersionConflict
from execflow.logs.context import log_context
from execflow.logs.events import error_fields
from execflow.pipeline.completeness import StoreIncomplete, require_complete
from execflow.pipeline.dbfence import wait_for_db_writer
from execflow.pipeline.effects import publish_effects
from execflow.pipeline.rebuild import rebuild_after_outage
from execflow.pipeline.refdata import account_of, remember_account
from execflow.pipeline.retry import retry_policy
from execflow.pipeline.seed import ReferenceData
from execflow.pipeline.services import Services

__all__ = ["COMPONENT", "IntakeResult", "OrderIntake", "TimeOrderIds"]

COMPONENT = "intake"
_MAX_ATTEMPTS = 5
_RESOLVE_TIMEOUT_S = 60.0
"""How long an action whose commit failed waits for the state store to tell its outcome."""
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
    account_version: int
    instrument: InstrumentConfig | None
    prices: Prices
    order: Order | None = None
    order_version: int = 0


_Rule = Callable[[_Loaded, str, datetime], rules.IntakeDecision]


@dataclass(slots=True)
class _Deferred:
    """A committed action whose effects are still to be published."""

    accepted: rules.Accepted
    trace_id: str
    since: float
    attempts: int = 1


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
        self._retry = retry_policy(services.settings)
        self._rng = random.Random()
        self._deferred: dict[str, _Deferred] = {}  # by lifecycle id, oldest first
        self._resender: asyncio.Task[None] | None = None

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
            account, version = await self._account(new.account_id)
            instrument = await self._refdata.instrument(account.group, new.symbol)
            return _Loaded(account, version, instrument, await self._fresh_prices())

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
            account, version = await self._account(account_id)
            instrument = None
            if needs_market:
                instrument = await self._refdata.instrument(order.group, order.symbol)
                if instrument is None:
                    raise _Refusal("unknown_symbol", order.symbol)
            prices = await self._fresh_prices() if needs_market else Prices()
            return _Loaded(account, version, instrument, prices, order, found.version)

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
        started = perf_counter()
        shown = {k: v for k, v in fields.items() if v is not None}
        with log_context(trace_id=trace_id, order_id=order_id):
            self._log.info("INTAKE:RECEIVED", action=action, **shown)
            try:
                for _attempt in range(_MAX_ATTEMPTS):
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
                        if not await self._landed_anyway(loaded, decided, exc):
                            if not isinstance(exc, VersionConflict):
                                raise
                            key = exc.fields.get("key")
                            self._log.info("INTAKE:CONFLICT", action=action, key=key)
                            continue
                    deferred = not await self._try_send(decided, trace_id)
                    return self._sent(action, decided, trace_id, started, deferred)
                raise _Refusal("busy", f"state changed {_MAX_ATTEMPTS} times meanwhile")
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
        )

    async def _commit(self, loaded: _Loaded, accepted: rules.Accepted) -> None:
        order = accepted.order
        writes = [Write("order", order.order_id, loaded.order_version, order_to_dict(order))]
        account = accepted.account
        account_data = account_to_dict(account) if account != loaded.account else None
        if account_data is not None:
            writes.append(
                Write("account", account.account_id, loaded.account_version, account_data)
            )
        await self._state.commit(account.account_id, writes)
        if account_data is not None:
            # the worker answering this request reads this very document: decode it never
            remember_account(account_data, account)

    async def _landed_anyway(
        self, loaded: _Loaded, accepted: rules.Accepted, exc: StoreError
    ) -> bool:
        """Whether a commit that raised was applied all the same.

        A commit that timed out may still run: Redis executes what was already in its
        socket once it answers again (a frozen server), and a retried call then conflicts
        with its own first attempt. So after a ``StoreError`` (a ``VersionConflict``
        included) the order is read back once the store answers: it holds exactly what
        this commit wrote -> applied; it still has the version read -> not applied (a
        conflict retries, an outage is raised to the caller); else -> unknown, raised
        after a CRITICAL line naming the order, for an operator to reconcile.
        """
        order = accepted.order
        lifecycle_id = accepted.request.lifecycle_id
        outage = not isinstance(exc, VersionConflict)
        if outage and not await self._store_answers():
            hint = "the state store did not come back: this order may hold a reservation"
            self._log.critical(
                "INTAKE:COMMIT_UNKNOWN", exc=exc, lifecycle_id=lifecycle_id, hint=hint
            )
            return False
        found = await self._state.get_order(order.account_id, order.order_id)
        if found is None or found.version == loaded.order_version:
            return False
        written = _as_stored(order_to_dict(order))
        if found.version == loaded.order_version + 1 and found.data == written:
            kind = type(exc).__name__
            self._log.info("INTAKE:COMMIT_LANDED", lifecycle_id=lifecycle_id, error_type=kind)
            return True
        if outage:
            hint = "the order changed since: check whether this request was applied"
            self._log.critical(
                "INTAKE:COMMIT_UNKNOWN",
                exc=exc,
                lifecycle_id=lifecycle_id,
                found_version=found.version,
                hint=hint,
            )
        return False

    async def _store_answers(self) -> bool:
        """Wait (with backoff, at most ``_RESOLVE_TIMEOUT_S``) until the store answers.

        A successful round trip also means every command the store had already received
        (the timed-out commit's included) has run: a read after it sees their effect.
        """
        deadline = perf_counter() + _RESOLVE_TIMEOUT_S
        attempt = 0
        while True:
            try:
                await self._state.ping()
            except StoreError:
                attempt += 1
                if perf_counter() >= deadline:
                    return False
                await asyncio.sleep(self._retry.delay_s(attempt, self._rng.random()))
                continue
            return True

    async def _send(self, accepted: rules.Accepted, trace_id: str) -> None:
        effects: tuple[Effect, ...] = (*accepted.events, LpRequest(accepted.request))
        await publish_effects(self._services, effects, trace_id)

    # -- deferred sends -------------------------------------------------------------------------

    @property
    def deferred(self) -> int:
        """Committed actions whose request is still waiting to be sent."""
        return len(self._deferred)

    async def _try_send(self, accepted: rules.Accepted, trace_id: str) -> bool:
        """Send now; on failure keep it for the background resender. True when sent."""
        try:
            await self._send(accepted, trace_id)
        except Exception as exc:  # noqa: BLE001 - the commit stands whatever failed: send later
            lid = accepted.request.lifecycle_id
            self._deferred[lid] = _Deferred(accepted, trace_id, perf_counter())
            self._log.retried(
                "INTAKE:SEND_DEFERRED",
                lifecycle_id=lid,
                kind=accepted.request.kind.value,
                deferred=len(self._deferred),
                outage=isinstance(exc, ExecflowError),
                **error_fields(exc, with_traceback=not isinstance(exc, ExecflowError)),
            )
            if self._resender is None or self._resender.done():
                self._resender = asyncio.create_task(self._resend_loop(), name="intake-resend")
            return False
        return True

    async def _resend_loop(self) -> None:
        """Re-send deferred effects, oldest first, backing off while the outage lasts."""
        while self._deferred:
            head = next(iter(self._deferred.values()))
            await asyncio.sleep(self._retry.delay_s(head.attempts, self._rng.random()))
            for lid, item in list(self._deferred.items()):
                order = item.accepted.order
                with log_context(trace_id=item.trace_id, order_id=order.order_id):
                    try:
                        await self._send(item.accepted, item.trace_id)
                    except Exception as exc:  # noqa: BLE001 - logged; retried after backoff
                        item.attempts += 1
                        self._log.retried(
                            "INTAKE:RESEND_FAILED",
                            lifecycle_id=lid,
                            attempts=item.attempts,
                            deferred=len(self._deferred),
                            **error_fields(exc, with_traceback=False),
                        )
                        break  # still away: back off before trying the others
                    del self._deferred[lid]
                    self._log.success(
                        "INTAKE:RESENT",
                        processing_time_ms=round((perf_counter() - item.since) * 1000, 3),
                        lifecycle_id=lid,
                        kind=item.accepted.request.kind.value,
                        attempts=item.attempts + 1,
                        user=order.account_id,
                    )

    async def flush(self, timeout_s: float | None = None) -> int:
        """Wait until every deferred send went out (at most ``timeout_s``); how many remain."""
        task = self._resender
        if task is not None and not task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), timeout_s)
        return len(self._deferred)

    async def shutdown(self, timeout_s: float = 30.0) -> None:
        """Give deferred sends ``timeout_s`` to go out; log CRITICAL what never went."""
        remaining = await self.flush(timeout_s)
        if self._resender is not None and not self._resender.done():
            self._resender.cancel()
            await asyncio.gather(self._resender, return_exceptions=True)
        if remaining:
            orders = sorted({d.accepted.order.order_id for d in self._deferred.values()})
            self._log.critical(
                "INTAKE:UNSENT",
                unsent=remaining,
                order_ids=",".join(orders),
                hint="committed to the state store but never sent: reconcile these orders",
            )

    # -- loading --------------------------------------------------------------------------------

    async def _account(self, account_id: str) -> tuple[Account, int]:
        found: Versioned | None = await self._refdata.account(account_id)
        if found is None:
            raise _Refusal("unknown_account", account_id)
        return account_of(account_id, found.data), found.version

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
            processing_time_ms=round((perf_counter() - started) * 1000, 3),
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


def _as_stored(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` as the state store gives it back (JSON types: lists, not tuples)."""
    stored: dict[str, Any] = orjson.loads(orjson.dumps(data))
    return stored


def _d(value: Decimal | str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _need(instrument: InstrumentConfig | None) -> InstrumentConfig:
    if instrument is None:
        raise _Refusal("unknown_symbol")
    return instrument
