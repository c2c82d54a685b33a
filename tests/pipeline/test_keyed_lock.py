"""Per-key locks: one holder per key, keys independent, nothing kept once released."""

from __future__ import annotations

import asyncio

import pytest

from execflow.pipeline.keyed_lock import KeyedLock


async def test_one_holder_per_key_and_keys_run_side_by_side() -> None:
    locks = KeyedLock()
    inside: dict[str, int] = {"a": 0, "b": 0}
    most: dict[str, int] = {"a": 0, "b": 0}
    both = asyncio.Event()

    async def work(key: str) -> None:
        async with locks.hold(key):
            inside[key] += 1
            most[key] = max(most[key], inside[key])
            if inside["a"] and inside["b"]:
                both.set()
            await asyncio.sleep(0.002)
            inside[key] -= 1

    await asyncio.gather(*(work(k) for k in "aaaabbbb"))
    assert most == {"a": 1, "b": 1}  # never two holders of one key
    assert both.is_set()  # but "a" and "b" were held at the same time
    assert len(locks) == 0  # every lock dropped once unused


async def test_a_failing_holder_releases_the_key() -> None:
    locks = KeyedLock()
    with pytest.raises(RuntimeError):
        async with locks.hold("a"):
            raise RuntimeError("transition failed")
    async with locks.hold("a"):
        assert len(locks) == 1
    assert len(locks) == 0


async def test_a_cancelled_waiter_leaves_no_lock_behind() -> None:
    locks = KeyedLock()
    release = asyncio.Event()

    async def holder() -> None:
        async with locks.hold("a"):
            await release.wait()

    async def waiter() -> None:
        async with locks.hold("a"):
            raise AssertionError("a cancelled waiter never holds the key")

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)
    second = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    release.set()
    await first
    assert len(locks) == 0
