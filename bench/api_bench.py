"""The platform API's cost: orders placed over HTTP against the same orders through OrderIntake.

::

    python bench/api_bench.py                       # 2,000 orders each way
    python bench/api_bench.py --orders 5000 --concurrency 32
    python bench/api_bench.py --database-url postgresql+asyncpg://.../empty_db

One process holds the embedded services (in-memory bus and state, SQLite in a temporary
directory, 200 demo accounts), opened and seeded anew for each phase so that each starts
from the same book, and, in turn:

1. **intake**: places ``--orders`` market orders through ``OrderIntake`` one after the
   other; the CPU time this process spent per order is the baseline;
2. **API**: serves the same intake under uvicorn on a free port while a *separate* client
   process (a plain asyncio HTTP/1.1 client, every request encoded beforehand) sends the
   same orders over HTTP (keep-alive, ``--concurrency`` in flight, each with its own
   Idempotency-Key), so the server's CPU per order is measured without the client's;
   then the same at half the rate the API just sustained, open loop, for the latency a
   client sees when the API is not saturated.

It prints orders/s, p50/p99 latencies, CPU per order and the ratio
``(API CPU per order - intake CPU per order) / intake CPU per order``: the cost of the
HTTP hop (uvicorn, FastAPI, key check, idempotency claim and answer in the database, the
log line) relative to the placing itself. Nothing consumes the queues meanwhile (the
pipeline's cost is ``execflow bench``'s subject), so both sides measure placing only.
The key's one scrypt check runs before each API phase's clock starts (its time is
printed). ``bench/api_instructions.py`` counts the same in instructions, which the
neighbours on a shared machine do not move.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from execflow.api.keys import Scope, mint_key
from execflow.api.server import ApiServer, api_context
from execflow.logs.setup import LogSystem, setup_logging
from execflow.pipeline.intake import OrderIntake
from execflow.pipeline.seed import apply_seed
from execflow.pipeline.services import Services, open_services
from execflow.settings import Settings
from execflow.sim.config import LpConfig
from execflow.sim.refdata import demo_seed
from execflow.sim.runtime import Simulator

ACCOUNTS = 200


@dataclass
class Phase:
    """What one way of placing orders measured."""

    name: str
    orders: int
    wall_s: float
    cpu_s: float
    latencies_ms: list[float]
    failures: int = 0
    key_check_ms: float = 0.0

    @property
    def per_s(self) -> float:
        return self.orders / self.wall_s

    @property
    def cpu_ms_per_order(self) -> float:
        return self.cpu_s * 1000 / self.orders

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _order(n: int) -> dict[str, str]:
    side = "BUY" if n % 2 else "SELL"
    # demo_seed numbers its accounts 1..N, every third one a demo account
    number = 1 + n % ACCOUNTS
    kind = "demo" if number % 3 == 0 else "live"
    return {"account_id": f"{kind}:{number}", "symbol": "EURUSD", "side": side, "qty": "0.01"}


async def _intake_phase(services: Services, orders: int) -> Phase:
    intake = OrderIntake(services)
    latencies = []
    failures = 0
    cpu, wall = time.process_time(), time.perf_counter()
    for n in range(orders):
        o = _order(n)
        started = time.perf_counter()
        result = await intake.open_market(o["account_id"], o["symbol"], o["side"], o["qty"])
        latencies.append((time.perf_counter() - started) * 1000)
        failures += not result.accepted
    phase = Phase(
        "intake", orders, time.perf_counter() - wall, time.process_time() - cpu, latencies
    )
    phase.failures = failures
    await intake.shutdown()
    return phase


def _client(base: str, token: str, orders: int, first: int, concurrency: int, rate: float) -> Any:
    """Run the HTTP client in its own process; its JSON report."""
    args = [sys.executable, __file__, "--client", base, token, str(orders), str(first),
            str(concurrency), str(rate)]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the HTTP client failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


async def _api_phase(
    services: Services, orders: int, concurrency: int, rate: float, first: int, name: str
) -> Phase:
    context = api_context(services)
    context.readiness.state_rebuilt = True
    minted = mint_key("bench", [Scope.TRADE], ["*"], services.clock.now())
    await context.store.add_key(minted.record)
    # the key's one slow check (scrypt, once per key and process) before the clock starts,
    # as on a server that has seen the key before; its time is printed on its own
    checked = time.perf_counter()
    await context.verifier.verify(minted.token)
    key_check_ms = (time.perf_counter() - checked) * 1000
    server = ApiServer(context, port=0)
    await server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        cpu = time.process_time()
        report = await asyncio.to_thread(
            _client, base, minted.token, orders, first, concurrency, rate
        )
        cpu_s = time.process_time() - cpu
    finally:
        await server.stop()
    phase = Phase(name, orders, report["wall_s"], cpu_s, report["latencies_ms"], report["failures"])
    phase.key_check_ms = key_check_ms
    return phase


@contextlib.asynccontextmanager
async def _fresh(settings: Settings, logs: LogSystem, database_url: str) -> AsyncIterator[Services]:
    """Services seeded anew: every phase starts from the same book.

    The intake's own cost grows with the positions an account holds (0.35, 0.45, 0.55,
    0.63 ms per order over four passes of 2,000 orders on one state): measured on one
    state, each later phase would be charged for the earlier ones' positions.
    """
    async with open_services(settings.model_copy(update={"database_url": database_url}),
                             logs) as services:  # fmt: skip
        sim = Simulator(services.bus, services.state, logs.logger("simulator"), LpConfig())
        await sim.feed.publish()
        seed = demo_seed(ACCOUNTS, random.Random(1), sim.feed)
        await apply_seed(seed, services.state, services.database)
        yield services


async def _run(
    orders: int, concurrency: int, directory: Path, database_url: str | None
) -> list[Phase]:
    settings = Settings(log_dir=directory / "logs", api_rate_per_s=1e9, api_rate_burst=1_000_000)

    def url(phase: str) -> str:
        return database_url or f"sqlite+aiosqlite:///{directory / f'bench-{phase}.db'}"

    with setup_logging(settings, "api") as logs:
        async with _fresh(settings, logs, url("intake")) as services:
            intake = await _intake_phase(services, orders)
        async with _fresh(settings, logs, url("max")) as services:
            full = await _api_phase(services, orders, concurrency, 0.0, orders, "api (max)")
        async with _fresh(settings, logs, url("half")) as services:
            half = await _api_phase(
                services, orders, concurrency, full.per_s / 2, 2 * orders, "api (half rate)"
            )
    return [intake, full, half]


def _print(phases: list[Phase], orders: int, concurrency: int) -> None:
    intake, full, half = phases
    print(f"orders per phase: {orders}; HTTP concurrency {concurrency}; half rate "
          f"{full.per_s / 2:,.0f}/s")  # fmt: skip
    print(f"{'phase':<18}{'orders/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms/order':>14}"
          f"{'refused':>9}")  # fmt: skip
    for p in phases:
        print(f"{p.name:<18}{p.per_s:>10,.0f}{p.pct(0.5):>9.2f}{p.pct(0.99):>9.2f}"
              f"{p.cpu_ms_per_order:>14.3f}{p.failures:>9}")  # fmt: skip
    ratio = (full.cpu_ms_per_order - intake.cpu_ms_per_order) / intake.cpu_ms_per_order
    print(
        f"API hop cost: +{ratio:.0%} CPU per placed order over OrderIntake alone "
        f"({full.cpu_ms_per_order:.3f} vs {intake.cpu_ms_per_order:.3f} ms; target <= 30 %)"
    )
    print(
        f"p99 at half rate: {half.pct(0.99):.2f} ms (target <= 5 ms); "
        f"median {statistics.median(half.latencies_ms):.2f} ms"
    )
    print(
        f"key check before each API phase (scrypt, once per key and process, not timed): "
        f"{full.key_check_ms:.0f} / {half.key_check_ms:.0f} ms"
    )


def main(
    orders: int = typer.Option(2000, min=10, help="Orders per phase."),
    concurrency: int = typer.Option(16, min=1, help="HTTP requests in flight (max-rate phase)."),
    database_url: str | None = typer.Option(
        None, "--database-url", help="An empty database to use (default: SQLite, temporary)."
    ),
) -> None:
    """Place the same orders through OrderIntake and over HTTP; compare."""
    with tempfile.TemporaryDirectory(prefix="api-bench-") as directory:
        if os.environ.get("API_BENCH_PROFILE"):
            import cProfile

            with cProfile.Profile() as profile:
                phases = asyncio.run(_run(orders, concurrency, Path(directory), database_url))
            profile.dump_stats(os.environ["API_BENCH_PROFILE"])
        else:
            phases = asyncio.run(_run(orders, concurrency, Path(directory), database_url))
    _print(phases, orders, concurrency)


# -- the client process ----------------------------------------------------------------------
#
# A plain asyncio HTTP/1.1 client over keep-alive connections, with every request encoded
# before the clock starts: the load generator must not be what saturates first. httpx,
# used before, spent about 5 ms of CPU per request here: with it, a no-op ASGI app under
# uvicorn answered only 140-330 requests/s on this 2-core machine, so "orders/s over HTTP"
# measured the client.


_OPEN_LOOP_LEAD_S = 0.5


def _request(host: str, token: str, n: int, first: int) -> bytes:
    """Order ``n``, the intake phase's order ``n`` too; its own Idempotency-Key."""
    body = json.dumps(_order(n), separators=(",", ":")).encode()
    head = (
        f"POST /v1/orders HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        f"Idempotency-Key: bench-{first + n}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
                    ) -> int:  # fmt: skip
    """Send one request, read its whole answer; its status."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def _send(base: str, token: str, orders: int, first: int, concurrency: int, rate: float
                ) -> dict[str, Any]:  # fmt: skip
    host, port = base.removeprefix("http://").rsplit(":", 1)
    requests = [_request(host, token, n, first) for n in range(orders)]
    idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(concurrency):
        idle.put_nowait(await asyncio.open_connection(host, int(port)))
    latencies: list[float] = []
    failures = 0
    # open loop: the schedule starts once every order's coroutine waits for its time.
    # Started at once, the first orders came due while ``gather`` was still creating the
    # others (some 30 ms for 2,000) and went out together: a burst of ~20 requests that
    # queued at the server and made the first 30 orders of every run its slowest.
    started = time.perf_counter() + (_OPEN_LOOP_LEAD_S if rate > 0 else 0.0)

    async def one(n: int) -> None:
        nonlocal failures
        if rate > 0:  # open loop: order n is due at n / rate, whatever came back
            await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))
        # open loop: timed from when the client was ready to send it, so a wait for a free
        # connection (the server falling behind) counts, the client's own timer lag not
        ready = time.perf_counter()
        connection = await idle.get()
        if rate <= 0:
            ready = time.perf_counter()  # closed loop: from the moment it is sent
        status = await _exchange(*connection, requests[n])
        latencies.append((time.perf_counter() - ready) * 1000)
        failures += status != 201
        idle.put_nowait(connection)

    await asyncio.gather(*(one(n) for n in range(orders)))
    wall = time.perf_counter() - started
    while not idle.empty():
        _, writer = idle.get_nowait()
        writer.close()
    return {"wall_s": wall, "latencies_ms": latencies, "failures": failures}


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        base, token, n, first, conc, rate = sys.argv[2:8]
        report = asyncio.run(_send(base, token, int(n), int(first), int(conc), float(rate)))
        print(json.dumps(report))
    else:
        typer.run(main)
