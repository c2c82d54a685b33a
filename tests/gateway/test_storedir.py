"""The store directory watch: gone, replaced, or left alone."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from execflow.gateway.storedir import DirectoryWatch


async def test_a_directory_removed_is_reported_and_one_left_alone_is_not(tmp_path: Path) -> None:
    store = tmp_path / "fix"
    store.mkdir()
    (store / "FIX.4.4-EXECFLOW-SIMLP.seqnums").write_text("1 : 1")
    watch = DirectoryWatch(store)
    try:
        lost = asyncio.create_task(watch.lost(every_s=0.01))
        await asyncio.sleep(0.1)
        assert not lost.done()  # untouched: nothing to say
        shutil.rmtree(store)
        assert await asyncio.wait_for(lost, 5) == "the directory is gone"
    finally:
        watch.close()


def test_a_directory_made_again_at_the_same_path_is_another_one(tmp_path: Path) -> None:
    store = tmp_path / "fix"
    store.mkdir()
    watch = DirectoryWatch(store)
    try:
        assert watch.change() is None
        store.rmdir()
        store.mkdir()  # its inode cannot be the held one's, even where numbers are reused
        assert watch.change() == "the directory was replaced by another one"
    finally:
        watch.close()
