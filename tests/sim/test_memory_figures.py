"""``apps.memory``: the RSS figures ``execflow bench`` and ``bench/memory.py`` print."""

from __future__ import annotations

import os
import subprocess
import sys

from execflow.apps.memory import MemoryFigures, ProcessRss, bare_interpreter_rss, process_rss


def test_a_bare_interpreter_is_smaller_than_one_that_loaded_the_pipeline() -> None:
    bare = bare_interpreter_rss()
    assert bare > 1_000_000
    code = "import execflow.pipeline.services, sys; print('up', flush=True); sys.stdin.read()"
    with subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None and child.stdin is not None
        child.stdout.readline()
        (loaded,) = process_rss({"loaded": child.pid})
        child.stdin.close()
    assert loaded.name == "loaded" and loaded.rss_bytes > bare


def test_an_exited_process_is_left_out() -> None:
    found = process_rss({"self": os.getpid(), "gone": 2**22 + 7})
    assert [p.name for p in found] == ["self"]


def test_the_lines_give_megabytes_and_the_ratio_to_the_bare_interpreter() -> None:
    mb = 1024 * 1024
    figures = MemoryFigures(
        (ProcessRss("worker_open", 50 * mb), ProcessRss("db", 80 * mb)), 10 * mb
    )
    assert figures.lines() == [
        "worker_open    50.0 MB  (5.0x a bare interpreter)",
        "db             80.0 MB  (8.0x a bare interpreter)",
        "bare interpreter (python -c pass): 10.0 MB",
    ]
