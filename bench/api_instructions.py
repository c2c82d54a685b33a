"""Instructions per placed order, through OrderIntake and over HTTP, counted by valgrind.

CPU seconds on a shared machine move with the neighbours (cache and core contention);
instruction counts do not. This runs the phases of ``bench/api_bench.py`` under
``valgrind --tool=cachegrind --cache-sim=no``, each twice (N and 2N orders, so that
start-up, seeding and the key's one scrypt check cancel out): the intake placing orders
one after the other, and the API server answering them over HTTP (the client is a
separate process, not counted). The difference divided by N is the cost of one order.

    python bench/api_instructions.py --orders 200                  # one order in flight
    python bench/api_instructions.py --orders 200 --concurrency 16

At ``--concurrency 1`` every order is answered alone, its two idempotency writes two
transactions of their own: the API's dearest case. Under valgrind the server runs some
50 times slower while the client does not, so with more in flight the idempotency
writes group far more than they would natively; the default is 1 for that reason.
Another source tree is counted by running this with ``PYTHONPATH=/old/src``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

from _cachegrind import instructions  # bench/, first on sys.path: see its doc

_INNER = "EXECFLOW_API_INSTR_INNER"


async def _inner(phase: str, orders: int, concurrency: int, directory: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    import api_bench
    from execflow.logs.setup import setup_logging
    from execflow.settings import Settings

    settings = Settings(log_dir=directory / "logs", api_rate_per_s=1e9, api_rate_burst=1_000_000)
    url = f"sqlite+aiosqlite:///{directory / 'bench.db'}"
    with setup_logging(settings, "api") as logs:
        async with api_bench._fresh(settings, logs, url) as services:
            if phase == "intake":
                await api_bench._intake_phase(services, orders)
            else:
                await api_bench._api_phase(services, orders, concurrency, 0.0, 0, "api")


def _count(phase: str, orders: int, concurrency: int) -> int:
    """Instructions of one run (the whole process, all its threads)."""
    with tempfile.TemporaryDirectory(prefix="api-instr-") as directory:
        env = {**os.environ, _INNER: f"{phase}:{orders}:{concurrency}:{directory}"}
        return instructions([sys.executable, __file__], env)


def main() -> None:
    """Count both phases at N and 2N orders; print instructions per order and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=1)
    options = parser.parse_args()
    n = options.orders
    per_order = {}
    for phase in ("intake", "api"):
        once = _count(phase, n, options.concurrency)
        twice = _count(phase, 2 * n, options.concurrency)
        per_order[phase] = (twice - once) / n
        print(f"{phase:<7} {once:>15,} instructions for {n} orders, {twice:>15,} for {2 * n}: "
              f"{per_order[phase] / 1e6:.3f} M per order")  # fmt: skip
    ratio = per_order["api"] / per_order["intake"] - 1
    print(f"API hop cost: +{ratio:.0%} instructions per placed order over OrderIntake alone "
          f"(concurrency {options.concurrency}; target <= 30 %)")  # fmt: skip


if __name__ == "__main__":
    inner = os.environ.get(_INNER)
    if inner:
        phase, count, concurrency, directory = inner.split(":", 3)
        asyncio.run(_inner(phase, int(count), int(concurrency), Path(directory)))
    else:
        main()
