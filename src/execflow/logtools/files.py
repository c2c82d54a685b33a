"""Find the log files of a directory (current, rotated, gzipped) and stream their bytes.

Files are read in big binary blocks that always end on a line boundary, so callers can
scan a block with ``bytes.find`` / compiled byte regexes and only parse the lines that
matter. Gzipped backups are inflated incrementally (``zlib``), never loaded whole.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BLOCK_BYTES",
    "LogFile",
    "discover",
    "iter_blocks",
    "iter_lines",
]

BLOCK_BYTES = 4 * 1024 * 1024

# name.log, name-2.log, name.log.3, name.log.3.gz, name.log.gz, name-lpname.log, name-lpname-2.log
_NAME = re.compile(
    r"^(?P<stem>[A-Za-z0-9_]+?)(?:-(?P<qualifier>[A-Za-z][A-Za-z0-9_]*))?(?:-(?P<instance>\d+))?"
    r"\.log(?:\.(?P<gen>\d+))?(?P<gz>\.gz)?$"
)

# Files that repeat or extend lines of the component files: not counted by ``stats``.
SHARED_FILES = frozenset({"provider_errors", "orders_calculated"})


@dataclass(frozen=True, slots=True)
class LogFile:
    """One file of the log directory."""

    path: Path
    stem: str
    instance: int
    generation: int
    gzipped: bool
    qualifier: str = ""

    @property
    def name(self) -> str:
        """The file name, as printed in front of its lines."""
        return self.path.name

    @property
    def shared(self) -> bool:
        """True for ``provider_errors`` and ``orders_calculated``."""
        return self.stem in SHARED_FILES

    @property
    def size(self) -> int:
        """Bytes on disk (0 if it vanished meanwhile)."""
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    @property
    def content_size(self) -> int:
        """Bytes of log lines: the size on disk, or for a gzip file the size its trailer
        records (modulo 4 GiB, and of the last member only: an estimate for scheduling)."""
        if not self.gzipped:
            return self.size
        try:
            with self.path.open("rb") as raw:
                raw.seek(-4, 2)
                return max(int.from_bytes(raw.read(4), "little"), self.size)
        except OSError:
            return self.size


def parse_name(path: Path) -> LogFile | None:
    """A ``LogFile`` when ``path`` is named like a log file of the catalog, else ``None``."""
    match = _NAME.match(path.name)
    if match is None:
        return None
    return LogFile(
        path=path,
        stem=match["stem"],
        instance=int(match["instance"] or 1),
        generation=int(match["gen"] or 0),
        gzipped=match["gz"] is not None,
        qualifier=match["qualifier"] or "",
    )


def discover(directory: Path, components: set[str] | None = None) -> list[LogFile]:
    """Every log file under ``directory``, oldest generation first, optionally per component.

    ``components`` holds file stems (``worker_open``, ``dispatcher``).
    """
    found: list[LogFile] = []
    if not directory.is_dir():
        return found
    for path in directory.iterdir():
        if not path.is_file():
            continue
        log_file = parse_name(path)
        if log_file is None:
            continue
        if components is not None and log_file.stem not in components:
            continue
        found.append(log_file)
    found.sort(key=lambda f: (f.stem, f.qualifier, f.instance, -f.generation))
    return found


def _inflate(path: Path, block_bytes: int) -> Iterator[bytes]:
    """Decompressed chunks of a (possibly multi-member) gzip file."""
    with path.open("rb") as raw:
        inflater = zlib.decompressobj(wbits=31)
        while True:
            data = raw.read(block_bytes // 4)
            if not data:
                break
            while True:
                # Bounded output: a highly compressed member must not inflate at once.
                out = inflater.decompress(data, block_bytes)
                if out:
                    yield out
                if inflater.eof:
                    data = inflater.unused_data
                    inflater = zlib.decompressobj(wbits=31)
                    if not data:
                        break
                    continue
                data = inflater.unconsumed_tail
                if not data and len(out) < block_bytes:
                    break
        tail = inflater.flush()
        if tail:
            yield tail


def _raw_chunks(path: Path, block_bytes: int) -> Iterator[bytes]:
    with path.open("rb") as raw:
        while chunk := raw.read(block_bytes):
            yield chunk


def iter_blocks(log_file: LogFile | Path, block_bytes: int = BLOCK_BYTES) -> Iterator[bytes]:
    """Blocks of whole lines (each ends with ``\\n`` except maybe the file's last)."""
    if isinstance(log_file, Path):
        parsed = parse_name(log_file)
        gzipped = parsed.gzipped if parsed else log_file.name.endswith(".gz")
        path = log_file
    else:
        gzipped, path = log_file.gzipped, log_file.path
    chunks = _inflate(path, block_bytes) if gzipped else _raw_chunks(path, block_bytes)
    pending = b""
    try:
        for chunk in chunks:
            data = pending + chunk if pending else chunk
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                pending = data
                continue
            pending = data[cut:]
            yield data[:cut]
    except (OSError, EOFError, zlib.error):
        # A backup truncated mid-write or removed by cleanup: keep what was read.
        pass
    if pending:
        yield pending


def iter_lines(log_file: LogFile | Path, block_bytes: int = BLOCK_BYTES) -> Iterator[bytes]:
    """Every line of a file, without its newline."""
    for block in iter_blocks(log_file, block_bytes):
        lines = block.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        yield from lines
