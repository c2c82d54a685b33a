"""Bytes per DB event of a fill, by the account's open positions, and the db writer's cost.

A fill's DB event is built by the step every transition ends with
(``transitions._common.commit``): order o-new, its margin reserved, opens on an account
that already holds N open positions. Printed per N: the payload's JSON size and its
canonical form's (what the audit chain hashes and the database stores), and the CPU time
the db writer spends per event to canonicalise and hash it (``time.process_time``:
CPU time, not wall clock; still approximate on a busy machine). ``--baseline-src``
measures another source tree (e.g. a checkout of an older commit) in the same run.

    python bench/db_event_bytes.py
    python bench/db_event_bytes.py --baseline-src /tmp/old/src
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from _trees import run_child, tree_env  # bench/, first on sys.path: see its doc

_SIZES = (1, 75, 1000)
_REPS = 300


def _measure() -> None:
    import orjson

    from execflow.domain.accounting import add_position, reserve, with_margins
    from execflow.domain.audit import canonical_json
    from execflow.domain.effects import EventKind
    from execflow.domain.enums import OrderStatus, OrderType, ReportStatus, Side
    from execflow.domain.messages import ExecutionReport
    from execflow.domain.models import Account, Order, Position
    from execflow.domain.transitions._common import commit

    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    order = Order(
        order_id="o-new",
        account_id="live:6",
        group="standard",
        symbol="EURUSD",
        side=Side.BUY,
        order_type=OrderType.MARKET,
        qty=Decimal("0.5"),
        status=OrderStatus.QUEUED,
        lifecycle_id="o-new-open",
        created_at=now,
        updated_at=now,
    )
    report = ExecutionReport(
        exec_id="EX-1",
        ord_status=ReportStatus.EXECUTED,
        lifecycle_id="o-new-open",
        cum_qty=Decimal("0.5"),
        avg_px=Decimal("1.08502"),
        side=Side.BUY,
        symbol="EURUSD",
        transact_time=now,
    )
    for size in _SIZES:
        positions = tuple(
            Position(f"p{n:06d}", "EURUSD", Side.BUY, Decimal("0.10"), Decimal("1085.01"))
            for n in range(size)
        )
        base = Account("live:6", "USD", Decimal("1000000.00"), Decimal("100"), "standard")
        held = replace(
            reserve(with_margins(base, positions, ()), "o-new", Decimal("542.51")), version=7
        )
        opened = add_position(
            held, Position("o-new", "EURUSD", Side.BUY, Decimal("0.5"), Decimal("1085.02"))
        )
        filled = replace(order, status=OrderStatus.OPEN, cum_qty=Decimal("0.5"))
        applied = commit(
            before=order,
            order=filled,
            account_before=held,
            account=opened,
            report=report,
            event=EventKind.ORDER_OPENED,
            now=now,
        )
        payload = applied.effects[0].payload  # type: ignore[union-attr]
        raw = orjson.dumps(payload)
        canonical = canonical_json(payload)
        started = time.process_time()
        for _ in range(_REPS):
            hashlib.sha256(canonical_json(payload)).hexdigest()
        cpu_us = (time.process_time() - started) / _REPS * 1e6
        print(
            f"  {size:5d} open positions: {len(raw):7,d} bytes JSON, {len(canonical):7,d} bytes "
            f"canonical, {cpu_us:8.1f} us CPU to canonicalise and hash"
        )


def _run(src: Path | None) -> None:
    env = tree_env(src, EXECFLOW_EVENT_BYTES_INNER="1")
    print(run_child([sys.executable, __file__], env), end="")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-src", type=Path, default=None)
    args = parser.parse_args()
    if os.environ.get("EXECFLOW_EVENT_BYTES_INNER"):
        _measure()
        return
    print("this tree:")
    _run(None)
    if args.baseline_src is not None:
        print(f"baseline ({args.baseline_src}):")
        _run(args.baseline_src.resolve())


if __name__ == "__main__":
    main()
