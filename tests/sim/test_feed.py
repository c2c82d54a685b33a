"""The price feed: seeded, tick-exact, written through the sink, listeners notified."""

from __future__ import annotations

import random
from collections.abc import Sequence
from decimal import Decimal

from execflow.clock import FakeClock
from execflow.domain.models import Quote
from execflow.sim.feed import PriceFeed
from tests.sim.conftest import EURUSD, PriceSinkRecorder


async def walk(seed: int, steps: int) -> list[Quote]:
    feed = PriceFeed([EURUSD], PriceSinkRecorder(), random.Random(seed), FakeClock())
    out: list[Quote] = []
    for _ in range(steps):
        out.extend(await feed.step())
    return out


async def test_same_seed_same_path_other_seed_other_path() -> None:
    assert await walk(5, 50) == await walk(5, 50)
    assert await walk(5, 50) != await walk(6, 50)


async def test_quotes_have_the_spread_and_the_tick_precision(
    feed: PriceFeed, sink: PriceSinkRecorder
) -> None:
    for _ in range(100):
        await feed.step()
    for symbol, data in sink.written:
        assert symbol == "EURUSD"
        bid, ask = Decimal(data["bid"]), Decimal(data["ask"])
        assert ask - bid == Decimal("0.00002")
        assert bid.as_tuple().exponent == -5
    assert len(sink.written) == 100


async def test_listeners_see_every_step_and_set_mid_moves_the_market(feed: PriceFeed) -> None:
    seen: list[Sequence[Quote]] = []
    feed.on_quotes(seen.append)
    feed.set_mid("EURUSD", Decimal("1.20000"))
    quotes = await feed.publish()
    assert quotes == [Quote("EURUSD", Decimal("1.19999"), Decimal("1.20001"))]
    assert seen == [quotes]
