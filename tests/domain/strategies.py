"""Hypothesis strategies for domain objects (shared by the domain tests)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import strategies as st

from execflow.domain.effects import (
    Calculation,
    CalculationName,
    DbEvent,
    EventKind,
    LpRequest,
    OutboxEntry,
)
from execflow.domain.enums import (
    CloseReason,
    CommissionType,
    CommissionValueType,
    InstrumentType,
    LegState,
    LpOrderType,
    OrderStatus,
    OrderType,
    ReportStatus,
    RequestKind,
    Side,
)
from execflow.domain.messages import ExecutionReport, ProviderRequest
from execflow.domain.models import (
    Account,
    CommissionSnapshot,
    InstrumentConfig,
    Leg,
    LifecycleRecord,
    Order,
    Position,
    Reservation,
)

ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-:", min_size=1, max_size=12)
decimals = st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
    lambda d: d.is_finite()
)
money = st.decimals(min_value=Decimal("-1e9"), max_value=Decimal("1e9"), places=5)
opt_money = st.none() | money
times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
opt_times = st.none() | times
opt_ids = st.none() | ids

legs = st.builds(
    Leg,
    state=st.sampled_from(LegState),
    price=opt_money,
    lifecycle_id=opt_ids,
    cancel_lifecycle_id=opt_ids,
    sequence=st.integers(0, 9),
    reason=st.none() | st.text(max_size=10),
)

requests = st.builds(
    ProviderRequest,
    lifecycle_id=ids,
    kind=st.sampled_from(RequestKind),
    account_id=ids,
    order_id=ids,
    symbol=ids,
    side=st.sampled_from(Side),
    order_type=st.sampled_from(LpOrderType),
    qty=decimals,
    orig_lifecycle_id=opt_ids,
    price=opt_money,
    stop_px=opt_money,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)

db_events = st.builds(
    DbEvent,
    event_id=ids,
    kind=st.sampled_from(EventKind),
    account_id=ids,
    order_id=ids,
    exec_id=ids,
    payload=st.dictionaries(st.text(max_size=6), json_values, max_size=3),
)
effects = db_events | st.builds(LpRequest, request=requests)
outbox_entries = st.builds(OutboxEntry, exec_id=ids, effects=st.tuples(effects, effects))

orders = st.builds(
    Order,
    order_id=ids,
    account_id=ids,
    group=ids,
    symbol=ids,
    side=st.sampled_from(Side),
    order_type=st.sampled_from(OrderType),
    qty=decimals,
    status=st.sampled_from(OrderStatus),
    lifecycle_id=ids,
    created_at=times,
    updated_at=times,
    requested_price=opt_money,
    new_price=opt_money,
    cum_qty=decimals,
    avg_px=opt_money,
    open_price=opt_money,
    opened_at=opt_times,
    reserved_margin=money,
    margin=money,
    commission=st.none()
    | st.builds(
        CommissionSnapshot,
        rate=money,
        commission_type=st.sampled_from(CommissionType),
        value_type=st.sampled_from(CommissionValueType),
        contract_size=money,
    ),
    entry_commission=money,
    exit_commission=money,
    close_lifecycle_id=opt_ids,
    close_cum_qty=decimals,
    close_avg_px=opt_money,
    close_price=opt_money,
    closed_at=opt_times,
    profit=opt_money,
    net_profit=opt_money,
    swap=money,
    close_reason=st.none() | st.sampled_from(CloseReason),
    reason=st.none() | st.text(max_size=10),
    lp_order_id=opt_ids,
    sl=legs,
    tp=legs,
    version=st.integers(0, 10**6),
    applied_exec_ids=st.lists(ids, max_size=4).map(tuple),
    outbox=st.lists(outbox_entries, max_size=2).map(tuple),
)

accounts = st.builds(
    Account,
    account_id=ids,
    currency=st.just("USD"),
    balance=money,
    leverage=decimals,
    group=ids,
    used_margin_executed=money,
    used_margin_all=money,
    positions=st.lists(
        st.builds(
            Position,
            order_id=ids,
            symbol=ids,
            side=st.sampled_from(Side),
            lots=decimals,
            margin_per_lot_usd=decimals,
        ),
        max_size=3,
    ).map(tuple),
    reservations=st.lists(st.builds(Reservation, order_id=ids, amount=money), max_size=3).map(
        tuple
    ),
    version=st.integers(0, 10**6),
)

instruments = st.builds(
    InstrumentConfig,
    group=ids,
    symbol=ids,
    contract_size=decimals,
    profit_currency=ids,
    instrument_type=st.sampled_from(InstrumentType),
    spread=decimals,
    spread_pip=decimals,
    commission_rate=decimals,
    commission_type=st.sampled_from(CommissionType),
    commission_value_type=st.sampled_from(CommissionValueType),
    crypto_margin_factor=decimals,
    min_lots=decimals,
    max_lots=decimals,
    lot_step=decimals,
)

lifecycles = st.builds(
    LifecycleRecord,
    lifecycle_id=ids,
    account_id=ids,
    order_id=ids,
    kind=st.sampled_from(RequestKind),
)

reports = st.builds(
    ExecutionReport,
    exec_id=ids,
    ord_status=st.sampled_from(ReportStatus),
    lifecycle_id=opt_ids,
    orig_lifecycle_id=opt_ids,
    lp_order_id=opt_ids,
    exec_type=st.none() | st.sampled_from(["0", "F", "4"]),
    avg_px=opt_money,
    cum_qty=opt_money,
    last_px=opt_money,
    last_qty=opt_money,
    leaves_qty=opt_money,
    price=opt_money,
    stop_px=opt_money,
    side=st.none() | st.sampled_from(Side),
    symbol=opt_ids,
    reason=st.none() | st.text(max_size=10),
    transact_time=opt_times,
    provider=ids,
)

calculations = st.builds(
    Calculation,
    name=st.sampled_from(CalculationName),
    order_id=ids,
    account_id=ids,
    symbol=ids,
    exec_id=ids,
    inputs=st.dictionaries(ids, ids, max_size=3),
    outputs=st.dictionaries(ids, ids, max_size=3),
)
