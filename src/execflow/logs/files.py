"""One log file on disk: appends whole lines, rotates by size, survives faults.

Used only by the background writer thread (and, briefly, by the gzip job through
``guard``). The size is tracked in memory, so the hot path never stats the file.

Shared files (written by several processes) are written under an ``fcntl.flock`` on a
side lock file: under the lock the process re-reads the real size (another process may
have appended or rotated), appends with one ``os.write`` on an ``O_APPEND`` descriptor
and rotates when full. So no line is lost, split, interleaved or duplicated, and each
retained file stays at its max size.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from execflow.logs.catalog import ResolvedFile
from execflow.logs.failures import FailureReporter, WriterCounters

__all__ = ["DIR_MODE", "FILE_MODE", "RotatingFile", "backup_path", "ensure_dir"]

DIR_MODE = 0o750
FILE_MODE = 0o640
_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC

RotatedHook = Callable[["RotatingFile", int], None]


def ensure_dir(path: Path) -> None:
    """Create ``path`` (mode 0750) and its parents when missing."""
    if not path.is_dir():
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        # mkdir's mode is filtered by the umask; the contract is 0750.
        os.chmod(path, DIR_MODE)


def backup_path(path: Path, number: int, gz: bool = False) -> Path:
    """``name.log.N`` or ``name.log.N.gz``."""
    return path.with_name(f"{path.name}.{number}{'.gz' if gz else ''}")


class RotatingFile:
    """An append-only file with size rotation to ``.1`` ... ``.N`` (or ``.N.gz``)."""

    def __init__(
        self,
        resolved: ResolvedFile,
        counters: WriterCounters,
        failures: FailureReporter,
        on_rotated: RotatedHook | None = None,
    ) -> None:
        self.path = resolved.path
        self.max_bytes = resolved.max_bytes
        self.backups = resolved.backups
        self.shared = resolved.spec.shared
        self.lock_path = self.path.with_name(f".{self.path.name}.lock")
        self._counters = counters
        self._failures = failures
        self._on_rotated = on_rotated
        self._fd: int | None = None
        self._ident: tuple[int, int] = (0, 0)
        self._lock_fd: int | None = None
        self._thread_lock = threading.Lock()
        self._torn = False
        self.size = 0

    # -- opening ---------------------------------------------------------------------------
    def open(self) -> bool:
        """Open (creating dir and file as needed); False, counted and reported, on failure."""
        self._close_fd()
        try:
            ensure_dir(self.path.parent)
            fd = os.open(self.path, _OPEN_FLAGS, FILE_MODE)
        except OSError as exc:
            self._failures.failed(str(self.path), exc)
            return False
        st = os.fstat(fd)
        if st.st_size == 0 and st.st_mode & 0o777 != FILE_MODE:
            # Another user's file keeps the mode they chose.
            with suppress(OSError):
                os.fchmod(fd, FILE_MODE)
        self._fd = fd
        self._ident = (st.st_dev, st.st_ino)
        self.size = st.st_size
        return True

    def _close_fd(self) -> None:
        if self._fd is not None:
            # Nothing can be lost here: writes are unbuffered os.write calls.
            with suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        """Close the file and the lock file."""
        with self._thread_lock:
            self._close_fd()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def check_path(self) -> None:
        """Reopen when the path no longer names our file (deleted, replaced, rotated away)."""
        if self.shared:
            return  # checked under the lock before every write
        if self._fd is None:
            return  # the next write opens it
        try:
            st = os.stat(self.path)
        except OSError:
            st = None
        if st is None or (st.st_dev, st.st_ino) != self._ident:
            # Let go of the lost inode; the next write recreates the file (and directory).
            self._close_fd()

    # -- writing ---------------------------------------------------------------------------
    def write_lines(self, lines: list[bytes]) -> None:
        """Append ``lines`` (each ending in ``\\n``), rotating between lines when full."""
        if self.shared:
            # One lock hold per file's worth of lines (at most one rotation), so other
            # processes interleave whole chunks instead of waiting for our whole batch.
            done = 0
            while done < len(lines):
                with self.guard():
                    if not self._sync_shared():
                        self._counters.dropped += len(lines) - done
                        return
                    consumed = self._write_split(lines[done:] if done else lines, once=True)
                if consumed == 0 and self.size > 0:
                    # The rotation failed (reported): write on rather than spin.
                    with self.guard():
                        self._write_split(lines[done:])
                    return
                done += consumed
            return
        # One stat per batch (not per line): a deleted or replaced file is noticed before
        # the batch goes to an unlinked inode.
        self.check_path()
        if self._fd is None and not self.open():
            self._counters.dropped += len(lines)
            return
        self._write_split(lines)

    def _write_split(self, lines: list[bytes], once: bool = False) -> int:
        """Write ``lines``, rotating when full; with ``once``, stop after one rotation.

        Returns how many lines were consumed.
        """
        data = b"".join(lines)
        if self.size + len(data) <= self.max_bytes:
            self._write([data], len(data), len(lines))
            return len(lines)
        batch: list[bytes] = []
        batch_bytes = 0
        for index, line in enumerate(lines):
            size = len(line)
            filled = self.size + batch_bytes
            if filled + size > self.max_bytes and filled > 0:
                if batch:
                    self._write(batch, batch_bytes)
                    batch, batch_bytes = [], 0
                self._rotate()
                if once:
                    return index
            batch.append(line)
            batch_bytes += size
        if batch:
            self._write(batch, batch_bytes)
        return len(lines)

    def _write(self, batch: list[bytes], batch_bytes: int, line_count: int = 0) -> None:
        """Append ``batch`` (whole lines; ``line_count`` when pre-joined into one chunk)."""
        line_count = line_count or len(batch)
        if self._fd is None and not self.open():
            self._counters.dropped += line_count
            return
        fd = self._fd
        if fd is None:  # open() succeeded, so this cannot happen; keeps mypy honest
            return
        data = b"".join(batch) if len(batch) > 1 else batch[0]
        # A disk-full write may have stopped mid-line: end that fragment before new lines,
        # so the torn line never glues itself to the next one.
        prefix = 1 if self._torn else 0
        if prefix:
            data = b"\n" + data
        total = batch_bytes + prefix
        view = memoryview(data)
        written = 0
        try:
            while written < total:
                written += os.write(fd, view[written:])
        except OSError as exc:
            self.size += written
            if written:
                self._torn = data[written - 1] != 0x0A
            complete = data.count(b"\n", prefix, written)
            self._failures.failed(str(self.path), exc, lines_lost=line_count - complete)
            self._counters.lines += complete
            self._counters.bytes += written
            if exc.errno not in (errno.EFBIG, errno.ENOSPC):  # disk full: keep the fd, retry
                self._close_fd()
            return
        self._torn = False
        self.size += total
        self._counters.lines += line_count
        self._counters.bytes += total
        self._failures.recovered(str(self.path))

    # -- rotation ----------------------------------------------------------------------------
    def _rotate(self) -> None:
        if self.shared:
            self._rotate_locked()
            return
        with self._thread_lock:
            self._rotate_locked()

    def _rotate_locked(self) -> None:
        old_ino = self._ident[1]
        try:
            if self.backups > 0:
                self._shift_backups()
                os.rename(self.path, backup_path(self.path, 1))
            else:
                os.unlink(self.path)
        except FileNotFoundError:
            pass  # removed under us: nothing to keep, start a new file
        except OSError as exc:
            self._failures.failed(str(self.path), exc)
            return
        self._counters.rotations += 1
        self.open()
        if self.backups > 0 and self._on_rotated is not None:
            self._on_rotated(self, old_ino)

    def _shift_backups(self) -> None:
        """Free slot ``.1``: shift ``.1`` ... up to the first gap by one, dropping the last."""
        present: list[Path] = []
        for number in range(1, self.backups + 1):
            plain = backup_path(self.path, number)
            if os.path.lexists(plain):
                present.append(plain)
                continue
            packed = backup_path(self.path, number, True)
            if not os.path.lexists(packed):
                break  # the first gap: everything above it stays where it is
            present.append(packed)
        if len(present) == self.backups:
            # Every slot is taken: the oldest backup goes.
            with suppress(FileNotFoundError):
                os.unlink(present.pop())
        for number in range(len(present), 0, -1):
            source = present[number - 1]
            gz = source.suffix == ".gz"
            with suppress(FileNotFoundError):  # a gzip job may have just replaced it
                os.rename(source, backup_path(self.path, number + 1, gz))

    # -- cross-process coordination -----------------------------------------------------------
    @contextmanager
    def guard(self) -> Iterator[None]:
        """Exclusive access to the file's names: this thread, and all processes if shared."""
        with self._thread_lock:
            if not self.shared:
                yield
                return
            lock_fd = self._acquire_flock()
            try:
                yield
            finally:
                if lock_fd is not None:
                    fcntl.flock(lock_fd, fcntl.LOCK_UN)

    def _acquire_flock(self) -> int | None:
        # The lock file may be deleted with its directory; a lock on an unlinked file
        # excludes nobody, so after locking check that the path is still our lock file.
        for _ in range(5):
            try:
                if self._lock_fd is None:
                    ensure_dir(self.lock_path.parent)
                    self._lock_fd = os.open(
                        self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE
                    )
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
                held = os.fstat(self._lock_fd)
                now = os.stat(self.lock_path)
            except FileNotFoundError:
                now = None
                held = None
            except OSError as exc:
                self._failures.failed(str(self.lock_path), exc)
                return None
            if now is not None and held is not None and now.st_ino == held.st_ino:
                return self._lock_fd
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # closing releases the stale lock too
                self._lock_fd = None
        return None

    def _sync_shared(self) -> bool:
        """Under the lock: follow another process's rotation and learn the real size."""
        try:
            st = os.stat(self.path)
        except OSError:
            return self.open()
        if self._fd is None or (st.st_dev, st.st_ino) != self._ident:
            return self.open()
        self.size = st.st_size
        return True
