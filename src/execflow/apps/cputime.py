"""CPU seconds of the pipeline's processes and of the servers they use, between two samples.

The distributed benchmarks (``execflow bench``, ``--instances``) divide the CPU time every
process spent during a pass by the reports it applied: the ``execflow run`` processes by
pid, and the local RabbitMQ, Redis and PostgreSQL server processes found by the port
they listen on (psutil; a server on another host is not measured). PostgreSQL counts
its postmaster, its background processes and the backends serving the pass's own
database: backends of other databases (other users of a shared server) are left out.
RabbitMQ and Redis are one process each, shared: what other clients make them do
during a pass is counted too (docs/benchmarks.md says so beside the figures).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import psutil  # type: ignore[import-untyped]

__all__ = ["CpuMeter", "CpuSample", "cpu_seconds", "is_other_database", "listening_pid"]

# a PostgreSQL client backend's title: "postgres: [cluster: ]user database host(port) ..."
_BACKEND = re.compile(r"^postgres: (?:\S+: )?\S+ (\S+) (?:\S+\(\d+\)|\[local\])")
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", ""}

_Key = tuple[int, float]
"""(pid, create time): a pid reused by a new process is a new key."""


def cpu_seconds(process: psutil.Process) -> float:
    """User + system CPU seconds of one process (0 once it is gone)."""
    try:
        times = process.cpu_times()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0.0
    return float(times.user + times.system)


def listening_pid(url: str, default_port: int) -> int | None:
    """The local process listening on ``url``'s port (None for another host or none found)."""
    parts = urlsplit(url)
    if (parts.hostname or "") not in _LOCAL_HOSTS:
        return None
    port = parts.port or default_port
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return None
    for connection in connections:
        if (
            connection.status == psutil.CONN_LISTEN
            and connection.laddr
            and connection.laddr.port == port
            and connection.pid
        ):
            return int(connection.pid)
    return None


def is_other_database(title: str, database: str) -> bool:
    """Whether a PostgreSQL process title is a client backend of another database."""
    match = _BACKEND.match(title)
    return match is not None and match.group(1) != database


@dataclass(frozen=True, slots=True)
class CpuSample:
    """CPU seconds per process, by group, at one moment."""

    groups: Mapping[str, Mapping[_Key, float]]

    def since(self, before: CpuSample) -> dict[str, float]:
        """CPU seconds each group spent after ``before`` (new processes count from zero)."""
        out: dict[str, float] = {}
        for group, now in self.groups.items():
            then = before.groups.get(group, {})
            out[group] = sum(max(0.0, cpu - then.get(key, 0.0)) for key, cpu in now.items())
        return out


class CpuMeter:
    """Samples the CPU time of named process groups and of the local servers."""

    def __init__(
        self,
        pipeline: Mapping[str, Sequence[int]],
        servers: Mapping[str, int | None],
        postgres_database: str | None = None,
    ) -> None:
        """``pipeline``: group -> pids; ``servers``: group -> the server's main pid.

        A server group named ``postgresql`` also counts the postmaster's children (those
        of ``postgres_database``, and the background ones).
        """
        self._groups: dict[str, list[psutil.Process]] = {}
        for group, pids in pipeline.items():
            self._groups[group] = [p for p in map(_process, pids) if p is not None]
        self._postgres_database = postgres_database
        self._postmaster: psutil.Process | None = None
        for group, pid in servers.items():
            process = _process(pid) if pid is not None else None
            if process is None:
                continue
            self._groups[group] = [process]
            if group == "postgresql":
                self._postmaster = process

    @property
    def measured(self) -> tuple[str, ...]:
        """The groups with at least one process found."""
        return tuple(self._groups)

    def sample(self) -> CpuSample:
        """Every group's CPU seconds now."""
        groups: dict[str, dict[_Key, float]] = {}
        for group, processes in self._groups.items():
            found = list(processes)
            if processes and processes[0] is self._postmaster:
                found.extend(self._postgres_children())
            groups[group] = {_key(p): cpu_seconds(p) for p in found}
        return CpuSample(groups)

    def _postgres_children(self) -> Iterable[psutil.Process]:
        assert self._postmaster is not None
        try:
            children = self._postmaster.children()
        except psutil.NoSuchProcess:
            return []
        database = self._postgres_database
        kept = []
        for child in children:
            try:
                title = " ".join(child.cmdline())
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            if database is None or not is_other_database(title, database):
                kept.append(child)
        return kept


def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


def _key(process: psutil.Process) -> _Key:
    try:
        return (process.pid, process.create_time())
    except psutil.NoSuchProcess:
        return (process.pid, 0.0)
