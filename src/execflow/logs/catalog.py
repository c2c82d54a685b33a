"""The one table of log files: names, default sizes, backup counts, who writes them.

Nothing else in execflow hard-codes a log file name or size; settings may override the
size and backup count of any entry by its catalog name (``log_max_bytes``, ``log_backups``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from execflow.errors import ConfigError
from execflow.settings import Settings

__all__ = [
    "CALCULATIONS",
    "CATALOG",
    "COMPONENTS",
    "ERRORS",
    "MIB",
    "ComponentSpec",
    "LogFileSpec",
    "ResolvedFile",
    "component_spec",
    "file_name",
    "resolve",
]

MIB = 1024 * 1024

CALCULATIONS = "orders_calculated"
ERRORS = "provider_errors"


@dataclass(frozen=True, slots=True)
class LogFileSpec:
    """One catalog entry: default limits, and whether several processes share it."""

    name: str
    max_bytes: int
    backups: int
    shared: bool = False
    json_only: bool = False


@dataclass(frozen=True, slots=True)
class ComponentSpec:
    """A component: the catalog file it writes and the logger name on its lines."""

    component: str
    file: str
    logger_name: str


def _table(*specs: LogFileSpec) -> Mapping[str, LogFileSpec]:
    return MappingProxyType({spec.name: spec for spec in specs})


CATALOG: Mapping[str, LogFileSpec] = _table(
    LogFileSpec("dispatcher", 100 * MIB, 15),
    LogFileSpec("worker_open", 75 * MIB, 12),
    LogFileSpec("worker_close", 75 * MIB, 12),
    LogFileSpec("worker_pending", 50 * MIB, 10),
    LogFileSpec("worker_cancel", 50 * MIB, 10),
    LogFileSpec("worker_reject", 50 * MIB, 10),
    LogFileSpec("worker_stoploss", 50 * MIB, 10),
    LogFileSpec("worker_takeprofit", 50 * MIB, 10),
    LogFileSpec(CALCULATIONS, 200 * MIB, 20, shared=True, json_only=True),
    LogFileSpec(ERRORS, 100 * MIB, 15, shared=True),
    LogFileSpec("db_writer", 50 * MIB, 10),
    LogFileSpec("intake", 50 * MIB, 10),
    LogFileSpec("simulator", 50 * MIB, 10),
    LogFileSpec("supervisor", 20 * MIB, 5),
    LogFileSpec("api", 50 * MIB, 10),
    LogFileSpec("lp_gateway", 100 * MIB, 15),
)

_WORKERS = ("open", "close", "pending", "cancel", "reject", "stoploss", "takeprofit")

COMPONENTS: Mapping[str, ComponentSpec] = MappingProxyType(
    {
        "dispatcher": ComponentSpec("dispatcher", "dispatcher", "provider.dispatcher"),
        **{
            f"worker_{kind}": ComponentSpec(
                f"worker_{kind}", f"worker_{kind}", f"provider.worker.{kind}"
            )
            for kind in _WORKERS
        },
        "db_writer": ComponentSpec("db_writer", "db_writer", "provider.db_writer"),
        "intake": ComponentSpec("intake", "intake", "provider.intake"),
        "simulator": ComponentSpec("simulator", "simulator", "provider.simulator"),
        "supervisor": ComponentSpec("supervisor", "supervisor", "provider.supervisor"),
        "api": ComponentSpec("api", "api", "provider.api"),
        "lp_gateway": ComponentSpec("lp_gateway", "lp_gateway", "provider.lp_gateway"),
    }
)


@dataclass(frozen=True, slots=True)
class ResolvedFile:
    """A catalog entry with the settings applied and its path for one process."""

    spec: LogFileSpec
    path: Path
    max_bytes: int
    backups: int

    @property
    def name(self) -> str:
        """The catalog name (``worker_open``), not the file name."""
        return self.spec.name


def component_spec(component: str) -> ComponentSpec:
    """The spec of ``component``; accepts ``worker.open`` and ``open`` for workers too."""
    key = component.replace(".", "_")
    if key in _WORKERS:
        key = f"worker_{key}"
    try:
        return COMPONENTS[key]
    except KeyError:
        known = ", ".join(sorted(COMPONENTS))
        raise ConfigError(f"unknown component {component!r} (known: {known})") from None


def file_name(name: str, instance: int | None = None, qualifier: str | None = None) -> str:
    """``worker_open.log`` for instance 1 (or none), ``worker_open-N.log`` for N > 1.

    ``qualifier`` names what one process of a component serves (the LP of a gateway:
    ``lp_gateway-primebank.log``). Shared files (calculations, errors) carry neither
    suffix: every process appends.
    """
    spec = CATALOG[name]
    if spec.shared:
        return f"{name}.log"
    stem = f"{name}-{qualifier}" if qualifier else name
    if instance is None or instance <= 1:
        return f"{stem}.log"
    return f"{stem}-{instance}.log"


def resolve(
    settings: Settings, name: str, instance: int | None = None, qualifier: str | None = None
) -> ResolvedFile:
    """The entry ``name`` with its size/backup overrides from ``settings``."""
    _check_overrides(settings)
    spec = CATALOG[name]
    return ResolvedFile(
        spec=spec,
        path=Path(settings.log_dir) / file_name(name, instance, qualifier),
        max_bytes=settings.log_max_bytes.get(name, spec.max_bytes),
        backups=settings.log_backups.get(name, spec.backups),
    )


def _check_overrides(settings: Settings) -> None:
    for setting, table in (
        ("log_max_bytes", settings.log_max_bytes),
        ("log_backups", settings.log_backups),
    ):
        unknown = sorted(set(table) - set(CATALOG))
        if unknown:
            raise ConfigError(
                f"{setting}: unknown log file(s) {', '.join(unknown)}; known: {', '.join(CATALOG)}",
                setting=setting,
            )
    for name, max_bytes in settings.log_max_bytes.items():
        if max_bytes < 1024:
            raise ConfigError(f"log_max_bytes[{name}] must be >= 1024", setting="log_max_bytes")
