"""The catalog: exact defaults, overrides, per-instance names, files created by setup."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from execflow.errors import ConfigError
from execflow.logs import CATALOG, COMPONENTS, file_name, resolve
from execflow.logs.catalog import component_spec

from .conftest import SettingsFactory, SystemFactory

MB = 1024 * 1024


def test_defaults_match_the_design_table() -> None:
    expected = {
        "dispatcher": (100, 15),
        "worker_open": (75, 12),
        "worker_close": (75, 12),
        "worker_pending": (50, 10),
        "worker_cancel": (50, 10),
        "worker_reject": (50, 10),
        "worker_stoploss": (50, 10),
        "worker_takeprofit": (50, 10),
        "orders_calculated": (200, 20),
        "provider_errors": (100, 15),
    }
    for name, (mb, backups) in expected.items():
        assert (CATALOG[name].max_bytes, CATALOG[name].backups) == (mb * MB, backups)
    assert {"db_writer", "intake", "simulator", "supervisor"} <= set(CATALOG)
    assert CATALOG["orders_calculated"].json_only and CATALOG["orders_calculated"].shared
    assert CATALOG["provider_errors"].shared


def test_settings_override_by_catalog_name(make_settings: SettingsFactory) -> None:
    settings = make_settings(log_max_bytes={"worker_open": 4096}, log_backups={"worker_open": 2})
    resolved = resolve(settings, "worker_open")
    assert (resolved.max_bytes, resolved.backups) == (4096, 2)
    assert resolve(settings, "dispatcher").max_bytes == 100 * MB


def test_unknown_override_is_a_config_error(make_settings: SettingsFactory) -> None:
    with pytest.raises(ConfigError, match="worker_opn"):
        resolve(make_settings(log_backups={"worker_opn": 3}), "worker_open")


def test_instance_names() -> None:
    assert file_name("worker_open") == "worker_open.log"
    assert file_name("worker_open", 1) == "worker_open.log"
    assert file_name("worker_open", 2) == "worker_open-2.log"
    assert file_name("provider_errors", 3) == "provider_errors.log"


def test_component_names_and_loggers() -> None:
    assert component_spec("worker_open").logger_name == "provider.worker.open"
    assert component_spec("open").file == "worker_open"
    assert component_spec("db_writer").logger_name == "provider.db_writer"
    assert component_spec("dispatcher").logger_name == "provider.dispatcher"
    for spec in COMPONENTS.values():
        assert spec.file in CATALOG
    with pytest.raises(ConfigError):
        component_spec("nope")


def test_setup_creates_every_file_with_modes(make_system: SystemFactory, log_dir: Path) -> None:
    system = make_system("dispatcher")
    for component in COMPONENTS:
        system.logger(component).info("X:Y", n=1)
    system.flush()
    assert stat.S_IMODE(log_dir.stat().st_mode) == 0o750
    for name in CATALOG:
        path = log_dir / f"{name}.log"
        assert path.is_file(), name
        assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_instance_two_writes_its_own_file(make_system: SystemFactory, log_dir: Path) -> None:
    one = make_system("worker_open", instance=1, bridge=False)
    two = make_system("worker_open", instance=2, bridge=False)
    one.events.info("OPEN:RECEIVED", who=1)
    two.events.info("OPEN:RECEIVED", who=2)
    one.flush()
    two.flush()
    assert "who=1" in (log_dir / "worker_open.log").read_text()
    assert "who=2" in (log_dir / "worker_open-2.log").read_text()
    assert "who=2" not in (log_dir / "worker_open.log").read_text()


def test_setup_close_repeatedly(make_system: SystemFactory, log_dir: Path) -> None:
    for round_number in range(3):
        system = make_system("worker_close")
        system.events.info("CLOSE:RECEIVED", round=round_number)
        system.close()
        system.close()
    text = Path(log_dir / "worker_close.log").read_text()
    assert [f"round={n}" in text for n in range(3)] == [True] * 3
