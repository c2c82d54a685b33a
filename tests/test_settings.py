from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from execflow.cli.app import app
from execflow.errors import ConfigError
from execflow.settings import Settings, load_settings


def test_defaults_are_embedded() -> None:
    settings = load_settings()
    assert settings.broker_url == "memory://"
    assert settings.state_url == "memory://"
    assert settings.database_url.startswith("sqlite+aiosqlite://")
    assert settings.log_dir == Path("logs/provider")
    assert settings.stats_every_n == 100
    assert settings.stats_interval_s == 300


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXECFLOW_LOG_FORMAT", "json")
    monkeypatch.setenv("EXECFLOW_LOG_MAX_BYTES", '{"worker_open": 1024}')
    settings = load_settings()
    assert settings.log_format == "json"
    assert settings.log_max_bytes == {"worker_open": 1024}


def test_bad_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXECFLOW_PREFETCH", "-3")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "prefetch" in str(info.value)
    assert "EXECFLOW_PREFETCH" in str(info.value)


def test_bad_scheme_is_refused() -> None:
    with pytest.raises(ConfigError, match="broker_url"):
        load_settings(broker_url="kafka://x")


def test_toml_file_is_read_and_env_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "execflow.toml"
    config.write_text('log_level = "DEBUG"\nprefetch = 7\n')
    monkeypatch.setenv("EXECFLOW_PREFETCH", "9")
    settings = load_settings(config)
    assert settings.log_level == "DEBUG"
    assert settings.prefetch == 9


def test_unknown_key_in_toml_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "execflow.toml"
    config.write_text("prefech = 7\n")
    with pytest.raises(ConfigError, match="prefech"):
        load_settings(config)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml")


def test_cli_help_lists_commands() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "config" in result.output
    assert "version" in result.output


def test_cli_bad_setting_exits_2_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXECFLOW_LOG_LEVEL", "LOUD")
    result = CliRunner().invoke(app, ["config"])
    assert result.exit_code == 2
    assert "log_level" in result.output


def test_cli_config_masks_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXECFLOW_BROKER_URL", "amqp://guest:hunter2@127.0.0.1:5672/")
    result = CliRunner().invoke(app, ["config"])
    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.output
    assert "guest:***@" in result.output


def test_gc_thresholds_from_the_environment_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().gc_thresholds == (10_000, 20, 100)
    monkeypatch.setenv("EXECFLOW_GC_THRESHOLDS", "[700, 10, 10]")
    assert load_settings().gc_thresholds == (700, 10, 10)
    monkeypatch.setenv("EXECFLOW_GC_THRESHOLDS", "[1000, 0, 10]")
    with pytest.raises(ConfigError, match="EXECFLOW_GC_THRESHOLDS"):
        load_settings()


def test_stuck_after_from_the_environment_and_positive(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (Settings().stuck_after_s, Settings().stuck_check_interval_s) == (300.0, 60.0)
    monkeypatch.setenv("EXECFLOW_STUCK_AFTER_S", "90")
    assert load_settings().stuck_after_s == 90.0
    for bad in ("0", "-5"):
        monkeypatch.setenv("EXECFLOW_STUCK_AFTER_S", bad)
        with pytest.raises(ConfigError, match="EXECFLOW_STUCK_AFTER_S"):
            load_settings()


def test_queue_type_defaults_to_quorum_and_a_bad_one_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().queue_type == "quorum"
    monkeypatch.setenv("EXECFLOW_QUEUE_TYPE", "classic")
    assert load_settings().queue_type == "classic"
    monkeypatch.setenv("EXECFLOW_QUEUE_TYPE", "stream")
    with pytest.raises(ConfigError, match="EXECFLOW_QUEUE_TYPE") as info:
        load_settings()
    assert "'quorum' or 'classic'" in str(info.value)


def test_broker_url_lists_hosts_but_none_empty() -> None:
    url = "amqp://u:p@h1:5672,h2:5673/vh"
    assert load_settings(broker_url=url).broker_url == url
    with pytest.raises(ConfigError, match="empty host"):
        load_settings(broker_url="amqp://u:p@h1:5672,,h2/vh")
