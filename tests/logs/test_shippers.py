"""One directory and one format for the logs across every shipped deployment file.

systemd's environment and the compose file write JSON lines to
``/var/log/execflow/provider``; Vector, Filebeat and rsyslog read the current files of
that directory (never the rotated backups), and each shipper keeps the line's own ECS
``message``.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
LOG_DIR = "/var/log/execflow/provider"


def _env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs if not k.lstrip().startswith("#")}


def test_systemd_writes_json_to_the_shared_directory() -> None:
    env = _env_file(DEPLOY / "systemd" / "execflow.env.example")
    assert env["EXECFLOW_LOG_DIR"] == LOG_DIR
    assert env["EXECFLOW_LOG_FORMAT"] == "json"
    unit = (DEPLOY / "systemd" / "execflow@.service").read_text()
    assert re.search(r"^ReadWritePaths=.*\B/var/log/execflow\b", unit, re.M)


def test_compose_writes_json_to_the_shared_directory() -> None:
    compose = (DEPLOY / "docker-compose.yml").read_text()
    dirs = re.findall(r"^\s+EXECFLOW_LOG_DIR:\s*(\S+)\s*$", compose, re.M)
    formats = re.findall(r"^\s+EXECFLOW_LOG_FORMAT:\s*(\S+)\s*$", compose, re.M)
    assert dirs and set(dirs) == {LOG_DIR}
    assert formats and set(formats) == {"json"}
    assert re.search(r"^\s+- [\w-]+:/var/log/execflow\s*$", compose, re.M)


def test_shippers_read_the_current_files_of_that_directory() -> None:
    vector = tomllib.loads((DEPLOY / "vector" / "vector.toml").read_text())
    source = vector["sources"]["execflow_logs"]
    assert source["include"] == [f"{LOG_DIR}/*.log"]
    assert source["exclude"] == [f"{LOG_DIR}/*.log.*"]
    remap = vector["transforms"]["execflow_parsed"]["source"]
    assert "del(.message)" not in remap  # the line's own ECS message survives

    filebeat = (DEPLOY / "filebeat" / "filebeat.yml").read_text()
    assert re.findall(r"^\s+- (/\S+)\s*$", filebeat, re.M) == [f"{LOG_DIR}/*.log"]
    assert re.search(rf"^\s+file_identity\.inode_marker\.path: {LOG_DIR}\s*$", filebeat, re.M)
    assert re.search(r"^\s+message_key: message\s*$", filebeat, re.M)

    rsyslog = (DEPLOY / "rsyslog" / "execflow.conf").read_text()
    assert re.findall(r'File="([^"]+)"', rsyslog) == [f"{LOG_DIR}/*.log"]


def test_no_deployment_file_names_another_log_directory() -> None:
    for path in DEPLOY.rglob("*"):
        if path.is_file() and path.suffix in {
            ".yml",
            ".yaml",
            ".toml",
            ".conf",
            ".example",
            ".service",
        }:
            text = path.read_text()
            assert "/var/lib/execflow/logs" not in text, path
