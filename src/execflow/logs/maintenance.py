"""Slow file work off every hot path: gzip of rotated backups, retention cleanup.

A second background thread, so compressing a 100 MB backup never delays the writer.
Cleanup runs when the thread starts, then once a day.
"""

from __future__ import annotations

import gzip
import os
import queue
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from execflow.logs.failures import FailureReporter
from execflow.logs.files import FILE_MODE, RotatingFile, backup_path
from execflow.logs.retention import cleanup

__all__ = ["DAY_S", "Maintenance", "gzip_backup"]

DAY_S = 86400.0
_CHUNK = 1024 * 1024


def _find_backup(file: RotatingFile, inode: int) -> Path | None:
    """The uncompressed backup ``.N`` that is the file with ``inode``, wherever it moved."""
    for number in range(1, file.backups + 1):
        candidate = backup_path(file.path, number)
        try:
            if os.stat(candidate).st_ino == inode:
                return candidate
        except FileNotFoundError:
            continue
    return None


def _open_backup(file: RotatingFile, inode: int) -> BinaryIO | None:
    """Open the backup that is ``inode``; re-find it if a rotation renamed it meanwhile."""
    for _ in range(5):
        source = _find_backup(file, inode)
        if source is None:
            return None
        try:
            handle = open(source, "rb")  # noqa: SIM115 - returned to the caller's with
        except FileNotFoundError:
            continue
        if os.fstat(handle.fileno()).st_ino == inode:
            return handle
        handle.close()
    return None


def gzip_backup(file: RotatingFile, inode: int, level: int = 6) -> Path | None:
    """Compress the rotated file ``inode`` into ``.N.gz``; returns the new path or None.

    Compression happens outside every lock; only the final rename runs under the file's
    guard, after locating the backup again (rotations may have renumbered it meanwhile).
    """
    temp = file.path.with_name(f".{file.path.name}.{inode}.gz.tmp")
    raw = _open_backup(file, inode)
    if raw is None:
        return None
    try:
        with raw, gzip.open(temp, "wb", compresslevel=level) as packed:
            shutil.copyfileobj(raw, packed, _CHUNK)
        os.chmod(temp, FILE_MODE)
    except OSError:
        temp.unlink(missing_ok=True)
        raise
    with file.guard():
        current = _find_backup(file, inode)
        if current is None:
            temp.unlink(missing_ok=True)
            return None
        target = current.with_name(current.name + ".gz")
        os.rename(temp, target)
        os.unlink(current)
    return target


@dataclass(frozen=True, slots=True)
class _GzipJob:
    file: RotatingFile
    inode: int


class Maintenance:
    """The thread running gzip jobs and the start-up and daily cleanups."""

    def __init__(
        self,
        directory: Path,
        failures: FailureReporter,
        gzip_level: int = 6,
        retention_days: float = 30.0,
        max_total_bytes: int = 20 * 1024**3,
        cleanup_every_s: float = DAY_S,
    ) -> None:
        self.directory = directory
        self.gzip_level = gzip_level
        self.retention_days = retention_days
        self.max_total_bytes = max_total_bytes
        self.cleanup_every_s = cleanup_every_s
        self._failures = failures
        self._jobs: queue.Queue[_GzipJob | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.cleanups = 0
        self.gzipped = 0

    def start(self) -> None:
        """Start the thread; it runs a cleanup first."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="execflow-log-maintenance", daemon=True
            )
            self._thread.start()

    def request_gzip(self, file: RotatingFile, inode: int) -> None:
        """Queue the compression of the backup that was ``file`` (the rotation hook)."""
        self._jobs.put(_GzipJob(file, inode))

    def idle(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued job is done (tests, shutdown)."""
        deadline = time.monotonic() + timeout_s
        while self._jobs.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)
        return not self._jobs.unfinished_tasks

    def close(self, timeout_s: float = 10.0) -> None:
        """Finish queued jobs and stop the thread."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join(timeout_s)
            self._thread = None

    def run_cleanup(self) -> None:
        """One cleanup of the directory now (errors reported, never raised)."""
        try:
            cleanup(self.directory, self.retention_days, self.max_total_bytes)
            self.cleanups += 1
        except OSError as exc:
            self._failures.failed(f"cleanup of {self.directory}", exc)

    def _run(self) -> None:
        self.run_cleanup()
        next_cleanup = time.monotonic() + self.cleanup_every_s
        while True:
            try:
                job = self._jobs.get(timeout=max(0.0, next_cleanup - time.monotonic()))
            except queue.Empty:
                self.run_cleanup()
                next_cleanup = time.monotonic() + self.cleanup_every_s
                continue
            if job is None:
                self._jobs.task_done()
                return
            try:
                gzip_backup(job.file, job.inode, self.gzip_level)
                self.gzipped += 1
            except OSError as exc:
                self._failures.failed(f"gzip of {job.file.path}", exc)
            finally:
                self._jobs.task_done()
