"""Cleanup of rotated backups: by age, then by a total size cap for the directory.

Only backups (``name.log.N`` and ``name.log.N.gz``) and stale gzip temp files are ever
deleted; current files (``name.log``) are kept whatever their age or size.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["BACKUP_NAME", "CleanupPlan", "Doomed", "apply_cleanup", "cleanup", "plan_cleanup"]

BACKUP_NAME = re.compile(r"^(?P<base>.+\.log)\.(?P<number>\d+)(?P<gz>\.gz)?$")
_GZ_TEMP = re.compile(r"^\..+\.log\.\d+\.gz\.tmp$")
_TEMP_MAX_AGE_S = 3600.0


@dataclass(frozen=True, slots=True)
class Doomed:
    """One file the cleanup removes, and why (``age``, ``size_cap``, ``stale_temp``)."""

    path: Path
    size: int
    reason: str


@dataclass(frozen=True, slots=True)
class CleanupPlan:
    """What a cleanup deletes, and the directory's size before and after."""

    directory: Path
    doomed: list[Doomed] = field(default_factory=list)
    total_before: int = 0
    total_after: int = 0


@dataclass(frozen=True, slots=True)
class _Entry:
    path: Path
    size: int
    mtime: float
    number: int


def plan_cleanup(
    directory: Path,
    max_age_days: float,
    max_total_bytes: int,
    now: float | None = None,
) -> CleanupPlan:
    """Decide what to delete, deleting nothing."""
    now = time.time() if now is None else now
    if not directory.is_dir():
        return CleanupPlan(directory)
    backups, doomed, total = _scan(directory, now)
    cutoff = now - max_age_days * 86400.0
    kept: list[_Entry] = []
    for entry in backups:
        if entry.mtime < cutoff:
            doomed.append(Doomed(entry.path, entry.size, "age"))
        else:
            kept.append(entry)
    remaining = total - sum(d.size for d in doomed)
    # Oldest first; among equal times, the highest backup number is the oldest.
    kept.sort(key=lambda e: (e.mtime, -e.number))
    for entry in kept:
        if remaining <= max_total_bytes:
            break
        doomed.append(Doomed(entry.path, entry.size, "size_cap"))
        remaining -= entry.size
    return CleanupPlan(directory, doomed, total, remaining)


def _scan(directory: Path, now: float) -> tuple[list[_Entry], list[Doomed], int]:
    """The directory's rotated backups, its stale gzip temporaries and its total size."""
    backups: list[_Entry] = []
    doomed: list[Doomed] = []
    total = 0
    with os.scandir(directory) as scan:
        for item in scan:
            try:
                if not item.is_file(follow_symlinks=False):
                    continue
                st = item.stat(follow_symlinks=False)
            except OSError:
                continue  # vanished while scanning (another process rotated)
            total += st.st_size
            match = BACKUP_NAME.match(item.name)
            if match:
                backups.append(
                    _Entry(Path(item.path), st.st_size, st.st_mtime, int(match["number"]))
                )
            elif _GZ_TEMP.match(item.name) and now - st.st_mtime > _TEMP_MAX_AGE_S:
                doomed.append(Doomed(Path(item.path), st.st_size, "stale_temp"))
    return backups, doomed, total


def apply_cleanup(plan: CleanupPlan) -> list[Path]:
    """Delete the planned files; returns those actually deleted."""
    deleted: list[Path] = []
    for item in plan.doomed:
        try:
            item.path.unlink()
        except FileNotFoundError:
            continue  # already rotated away or removed by another process
        deleted.append(item.path)
    return deleted


def cleanup(
    directory: Path,
    max_age_days: float,
    max_total_bytes: int,
    dry_run: bool = False,
    now: float | None = None,
) -> CleanupPlan:
    """Plan and (unless ``dry_run``) apply a cleanup of ``directory``."""
    plan = plan_cleanup(directory, max_age_days, max_total_bytes, now)
    if not dry_run:
        apply_cleanup(plan)
    return plan
