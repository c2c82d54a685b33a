"""What an account's pending orders cost each of its transitions (domain and codec only).

Every order in flight, a pending order included, holds a margin reservation on its
account (``domain.accounting.reserve``) until its fill, reject or cancel, and the
reservations travel with the account's header. This times, in one process, what a worker
does with such an account around its commits, on an account already holding N
reservations: one reservation made, the account document encoded (``account_document``)
and dumped to JSON as a store write does, loaded and decoded as the next read does
(``pipeline.decoded``), then the same for its release; each step starts from the account
the step before read back, as a worker's transitions follow each other. With
``--foreign`` every other read instead meets a document another process wrote (the
intake placing an order elsewhere): one reservation more than this process last saw.

It prints microseconds per transition for N = 1, 100 and 1,000 and the ratio to N = 1
(issue 14 target 1 asks at most 1.2x for 1,000 open positions; this is the same question
for pending orders). ``--baseline-src`` runs another tree (``git archive REV src``) in a
child process of the same run and prints its figures and the ratios between the two::

    python bench/account_reservations.py
    python bench/account_reservations.py --baseline-src /tmp/base/src --foreign
"""

from __future__ import annotations

import argparse
import json
import sys
import timeit
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from _trees import run_child, tree_env
from execflow.domain import codec
from execflow.domain.accounting import release, reserve, with_margins
from execflow.domain.models import Account, Reservation
from execflow.pipeline.decoded import DecodedRefdata

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


class Worker:
    """One account's chain of transitions, each written and read back as a worker does."""

    def __init__(self, account: Account, foreign: bool) -> None:
        self.decoded = DecodedRefdata()
        self.account = self._written_and_read(account)
        self.foreign = foreign
        self.step = 0

    def _written_and_read(self, account: Account) -> Account:
        document = codec.account_document(account)
        self.decoded.remember_account(document, account)
        self.stored = orjson.loads(orjson.dumps(document))
        return self.decoded.account(account.account_id, self.stored)

    def _foreign_read(self, account: Account) -> Account:
        """The account as another process left it (one order more reserved there, first
        in order id), read, and that order then released here."""
        self.step += 1
        order_id = f"a{self.step:08d}"
        stored = self.stored
        used = Decimal(stored["used_margin_all"]) + Decimal("5.00")
        foreign = {
            **stored,
            "used_margin_all": str(used),
            "reservations": [{"order_id": order_id, "amount": "5.00"}, *stored["reservations"]],
            "version": stored["version"] + 1,
        }
        read = self.decoded.account(account.account_id, orjson.loads(orjson.dumps(foreign)))
        return self._written_and_read(release(read, order_id))

    def transition(self) -> None:
        held = self._written_and_read(reserve(self.account, "zz-new", Decimal("10.00")))
        if self.foreign:
            held = self._foreign_read(held)
        self.account = self._written_and_read(release(held, "zz-new"))


def measure(sizes: list[int], rounds: int, foreign: bool) -> dict[str, Any]:
    """Microseconds per transition and the header's JSON size, per size."""
    out: dict[str, Any] = {}
    for size in sizes:
        worker = Worker(holding(size), foreign)
        spent = min(timeit.repeat(worker.transition, number=rounds, repeat=5)) / rounds * 1e6
        assert worker.account.reservations == holding(size).reservations  # nothing lost
        header = len(orjson.dumps(codec.account_to_dict(worker.account)))
        out[str(size)] = {"us": spent, "bytes": header}
    return out


def report(title: str, figures: dict[str, Any]) -> None:
    print(title)
    first = None
    for size, row in figures.items():
        first = row["us"] if first is None else first
        print(
            f"  {int(size):6d} reservations: {row['us']:9.1f} us per transition, "
            f"account {row['bytes']:,} bytes, {row['us'] / first:6.1f}x the first size"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,100,1000")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument(
        "--foreign", action="store_true", help="every other read meets another process's write"
    )
    parser.add_argument("--baseline-src", type=Path, help="another tree's src, measured in a child")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # a child's answer
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    mine = measure(sizes, args.rounds, args.foreign)
    if args.json:
        print(json.dumps(mine))
        return
    how = "another process's write between" if args.foreign else "own writes only"
    report(f"this tree ({how}):", mine)
    if args.baseline_src is None:
        return
    command = [sys.executable, __file__, "--json", "--sizes", args.sizes]
    command += ["--rounds", str(args.rounds)] + (["--foreign"] if args.foreign else [])
    theirs = json.loads(run_child(command, tree_env(args.baseline_src)))
    report(f"baseline ({args.baseline_src}):", theirs)
    for size in mine:
        print(f"  this/baseline at {size}: {mine[size]['us'] / theirs[size]['us']:.3f}")


if __name__ == "__main__":
    main()
