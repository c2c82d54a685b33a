"""What an account's pending orders cost each of its transitions (domain and codec only).

Every order in flight, a pending order included, holds a margin reservation on its
account (``domain.accounting.reserve``), and the reservations travel with the account's
header: each transition filters, sums and sorts them, and each state store write and read
encodes and decodes them all. This times, in this process, one reservation made and
released on an account already holding N, plus its header encoded, dumped to JSON,
loaded and decoded (what a worker does with the account around a commit), for N = 1, 100
and 1,000, and prints the ratio to N = 1 (issue 14 target 1 asks at most 1.2x for 1,000
open positions; this is the same question for pending orders)::

    python bench/account_reservations.py
    python bench/account_reservations.py --sizes 1,10,100,1000,5000
"""

from __future__ import annotations

import argparse
import timeit
from decimal import Decimal

import orjson

from execflow.domain import codec
from execflow.domain.accounting import release, reserve, with_margins
from execflow.domain.models import Account, Reservation

_EMPTY = Account(
    account_id="live:1",
    currency="USD",
    balance=Decimal("100000"),
    leverage=Decimal("100"),
    group="std",
    positions=(),
    reservations=(),
    used_margin_all=Decimal(0),
    used_margin_executed=Decimal(0),
    version=1,
)


def holding(count: int) -> Account:
    """The account with ``count`` reservations of 12.34 USD each."""
    held = tuple(Reservation(f"o{i:06d}", Decimal("12.34")) for i in range(count))
    return with_margins(_EMPTY, (), held)


def per_transition_us(account: Account, rounds: int) -> float:
    """Microseconds per reserve + release + header encoded, dumped, loaded and decoded."""

    def step() -> None:
        changed = release(reserve(account, "zz-new", Decimal("10.00")), "zz-new")
        blob = orjson.dumps(codec.account_header_document(changed))
        codec.account_from_dict(orjson.loads(blob))

    return min(timeit.repeat(step, number=rounds, repeat=5)) / rounds * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,100,1000")
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    first: float | None = None
    for size in sizes:
        account = holding(size)
        spent = per_transition_us(account, args.rounds)
        first = spent if first is None else first
        header = len(orjson.dumps(codec.account_header_document(account)))
        print(
            f"{size:6d} reservations: {spent:9.1f} us per transition, "
            f"header {header:,} bytes, {spent / first:6.1f}x the first size"
        )


if __name__ == "__main__":
    main()
