"""Cheap pre-filters on raw bytes: find the lines that contain a needle, parse only those."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from typing import Protocol, TypeVar

from execflow.logtools.files import LogFile, iter_blocks

__all__ = [
    "PARALLEL_MIN_BYTES",
    "ScanProgress",
    "lines_containing",
    "map_files",
    "matching_lines",
]

# Below this much data, a process pool costs more than it saves.
PARALLEL_MIN_BYTES = 64 * 1024 * 1024

T = TypeVar("T")


class ScanProgress(Protocol):
    """Told how many bytes a scan will read, then how many it has read (a progress bar)."""

    def planned(self, total_bytes: int) -> None:
        """The scan will read ``total_bytes`` more."""

    def advanced(self, done_bytes: int) -> None:
        """The scan has read ``done_bytes`` more."""


def lines_containing(
    block: bytes, needles: Sequence[bytes], anchor: bytes = b""
) -> list[tuple[int, bytes]]:
    """``(offset, line)`` for each line of ``block`` holding any needle, each line once.

    With an ``anchor`` that every needle contains (the id of ``order_id=ID`` and
    ``"order_id":"ID"``), the block is scanned once for the anchor and only the lines it
    hits are checked for a needle; otherwise once per needle.
    """
    found: dict[int, bytes] = {}
    for needle in (anchor,) if anchor else needles:
        pos = block.find(needle)
        while pos >= 0:
            start = block.rfind(b"\n", 0, pos) + 1
            end = block.find(b"\n", pos)
            if end < 0:
                end = len(block)
            if start not in found:
                line = block[start:end].rstrip(b"\r")
                if not anchor or any(n in line for n in needles):
                    found[start] = line
            pos = block.find(needle, end)
    return sorted(found.items())


def matching_lines(
    log_file: LogFile, text: re.Pattern[bytes], json: re.Pattern[bytes]
) -> Iterator[bytes]:
    """Each line of ``log_file`` matched by ``text`` (text lines) or ``json`` (ECS lines).

    Both patterns start with ``\\n`` and run over whole blocks, so the search is C's, not a
    Python loop per line; the JSON pattern only runs on blocks that hold a JSON line.
    """
    for block in iter_blocks(log_file):
        data = b"\n" + block
        found = text.findall(data)
        if b"\n{" in data:
            found.extend(json.findall(data))
        for raw in found:
            yield raw[1:]


def default_jobs() -> int:
    """Worker processes for scans: the CPUs this process may use, at most 4."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 4))


def map_files(
    func: Callable[[LogFile], T],
    files: Iterable[LogFile],
    jobs: int | None = None,
    progress: ScanProgress | None = None,
) -> list[T]:
    """``func`` over each file, in worker processes when the files are big enough.

    Results come back in the order of ``files``. The files with the most lines (gzip
    backups by their uncompressed size) are submitted first so the workers finish together.
    ``progress`` hears the bytes planned (content sizes, ``LogFile.content_size``) and
    each file's bytes as that file is done, in this process.
    """
    files = list(files)
    jobs = default_jobs() if jobs is None else jobs
    sizes = {f.path: f.content_size for f in files}
    done = progress.advanced if progress is not None else _ignore
    if progress is not None:
        progress.planned(sum(sizes.values()))
    if jobs <= 1 or len(files) <= 1 or sum(sizes.values()) < PARALLEL_MIN_BYTES:
        results = []
        for f in files:
            results.append(func(f))
            done(sizes[f.path])
        return results
    order = sorted(range(len(files)), key=lambda i: -sizes[files[i].path])
    by_index: dict[int, T] = {}
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("fork")) as pool:
        futures = {pool.submit(func, files[i]): i for i in order}
        for future in as_completed(futures):
            i = futures[future]
            by_index[i] = future.result()
            done(sizes[files[i].path])
    return [by_index[i] for i in range(len(files))]


def _ignore(_size: int) -> None:
    return None
