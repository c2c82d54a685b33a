"""Fixtures for the logging layer: settings in a temp dir, systems closed after each test."""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from execflow.logs import LogSystem, setup_logging
from execflow.settings import Settings

SettingsFactory = Callable[..., Settings]
SystemFactory = Callable[..., LogSystem]


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "logs" / "provider"


@pytest.fixture
def make_settings(log_dir: Path) -> SettingsFactory:
    def make(**overrides: Any) -> Settings:
        overrides.setdefault("log_dir", log_dir)
        return Settings(**overrides)

    return make


@pytest.fixture
def make_system(make_settings: SettingsFactory) -> Iterator[SystemFactory]:
    systems: list[LogSystem] = []

    def make(
        component: str = "worker_open",
        instance: int | None = None,
        clock: Any = None,
        stderr: Any = None,
        bridge: bool = True,
        **overrides: Any,
    ) -> LogSystem:
        system = setup_logging(
            make_settings(**overrides), component, instance, clock, bridge=bridge, stderr=stderr
        )
        systems.append(system)
        return system

    yield make
    for system in systems:
        system.close()


def read_all(directory: Path, file_name: str) -> list[str]:
    """Every line of ``file_name`` and its backups (plain or gzipped), oldest file first."""
    backups = []
    for path in directory.iterdir():
        if path.name.startswith(file_name + "."):
            number = int(path.name[len(file_name) + 1 :].split(".")[0])
            backups.append((number, path))
    lines: list[str] = []
    for _, path in sorted(backups, reverse=True):
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        lines += split_lines(data)
    current = directory / file_name
    if current.exists():
        lines += split_lines(current.read_bytes())
    return lines


def split_lines(data: bytes) -> list[str]:
    """Lines split on ``\\n`` only (``str.splitlines`` would also split on U+2028, ...)."""
    text = data.decode()
    assert text == "" or text.endswith("\n"), "a file must end with a whole line"
    return text.split("\n")[:-1]
