"""deploy/docker-compose.yml and what it mounts, checked without a container runtime.

No container can be started by CI here (no Docker Hub images), so the stack is checked
as files: every execflow service runs a real ``execflow`` command with options that
parse, every component of the pipeline has its service, the image, volumes, ports,
health checks and start order are consistent, Prometheus scrapes exactly the services
that serve metrics (``promtool check config``), Grafana's provisioning points at the
Prometheus service and at the dashboard's mount, and ``docker-compose config`` accepts
the file where Debian's docker-compose is installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from execflow.cli.app import app
from execflow.domain.routing import Worker
from execflow.settings import require_services

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
IMAGE = "${EXECFLOW_IMAGE:-execflow:latest}"
METRICS_PORT = "9310"


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return loaded


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    return services


def _execflow_services() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in _services().items() if s.get("image") == IMAGE}


def _tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        message = f"{name} is not installed (Debian package {package}; .ci/apt-deps)"
        if require_services():
            pytest.fail(message + " and EXECFLOW_REQUIRE_SERVICES=1")
        pytest.skip(message)
    return found


def _container_files() -> dict[str, Path]:
    """Files a container sees, by their path there: copied by the Dockerfile or mounted."""
    files = {}
    for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and len(words) == 3 and words[2].startswith("/etc/"):
            files[words[2]] = ROOT / words[1]
    for service in _services().values():
        for mount in service.get("volumes", []):
            source, _, target = str(mount).partition(":")
            if source.startswith("."):
                files[target.split(":")[0]] = DEPLOY / source
    return files


def parse_command(words: list[str]) -> tuple[list[str], dict[str, Any]]:
    """Parse ``execflow WORDS`` as the CLI would: the command path and the leaf's values.

    A file the container sees is read from the repository file it comes from. Raises the
    CLI's usage error for an unknown command or option, a missing argument or file.
    """
    files = _container_files()
    command: Any = typer.main.get_command(app)
    ctx = command.make_context("execflow", [str(files.get(w, w)) for w in words])
    path: list[str] = []
    while hasattr(command, "resolve_command"):
        # the words after the group's own options: its sub-command first
        rest = [*(getattr(ctx, "_protected_args", None) or []), *ctx.args]
        if not rest:
            break
        name, command, args = command.resolve_command(ctx, rest)
        path.append(str(name))
        ctx = command.make_context(name, args, parent=ctx)
    return path, dict(ctx.params)


def test_the_command_parser_refuses_what_the_cli_refuses() -> None:
    assert parse_command(["run", "worker", "open"]) == (
        ["run", "worker"],
        {"name": "open", "instance": None},
    )
    for bad in (["run", "nosuch"], ["run", "worker"], ["run", "dispatcher", "--bogus"]):
        with pytest.raises(Exception, match=r"No such|Missing"):
            parse_command(bad)


def test_every_execflow_service_runs_a_real_command() -> None:
    services = _execflow_services()
    assert len(services) >= 14
    # `docker compose run --rm cli COMMAND ...` replaces the cli service's command
    assert services.pop("cli")["command"] == ["--help"]
    for name, service in services.items():
        path, params = parse_command(service["command"])
        if path == ["run", "worker"]:
            Worker(params["name"])  # a worker the CLI knows
            assert name.startswith(f"worker-{params['name']}")  # worker-open, worker-open-2


def test_every_pipeline_component_has_its_own_service() -> None:
    commands = {
        tuple(parse_command(s["command"])[0]): name
        for name, s in _execflow_services().items()
        if name != "cli"
    }
    workers = {
        parse_command(s["command"])[1]["name"]
        for s in _execflow_services().values()
        if s["command"][:2] == ["run", "worker"]
    }
    assert workers == {w.value for w in Worker}
    for path in [("run", "dispatcher"), ("run", "db-writer"), ("run", "api"), ("simulate",)]:
        assert path in commands, path
    assert ("run", "lp-gateway") in commands
    assert ("seed",) in commands
    # one process per component, not the supervisor of all of them
    assert ("run", "all") not in commands
    assert {"rabbitmq", "redis", "postgres", "prometheus", "grafana"} <= set(_services())


def test_execflow_services_share_the_image_built_from_the_dockerfile() -> None:
    for name, service in _execflow_services().items():
        assert service["build"] == {"context": "..", "dockerfile": "Dockerfile"}, name
        assert (DEPLOY / service["build"]["context"] / "Dockerfile").is_file()
        assert "entrypoint" not in service, f"{name}: the image's entrypoint is execflow"
        env = service["environment"]
        assert env["EXECFLOW_BROKER_URL"].startswith("amqp://")
        assert env["EXECFLOW_STATE_URL"].startswith("redis://")
        assert env["EXECFLOW_DATABASE_URL"].startswith("postgresql+asyncpg://")
    others = [s["image"] for n, s in _services().items() if n not in _execflow_services()]
    assert all(":" in image and "latest" not in image for image in others), others


def _volume_sources(service: dict[str, Any]) -> list[str]:
    return [str(v).split(":", 1)[0] for v in service.get("volumes", [])]


def test_volumes_are_declared_and_bind_mounts_exist() -> None:
    declared = set(_compose()["volumes"])
    used = set()
    for name, service in _services().items():
        for source in _volume_sources(service):
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} is not in deploy/"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"
                used.add(source)
    assert used == declared


def test_ports_are_published_on_localhost_once() -> None:
    published = []
    for name, service in _services().items():
        for port in service.get("ports", []):
            host, host_port, _container = str(port).split(":")
            assert host == "127.0.0.1", f"{name} publishes {port} beyond this host"
            published.append(host_port)
    assert sorted(published) == sorted(set(published))
    assert {"8080", "3000", "9090"} <= set(published)


def _healthy(service: dict[str, Any]) -> bool:
    check = service.get("healthcheck")
    return check is not None and not check.get("disable", False)


def test_start_order_waits_for_what_each_service_needs() -> None:
    services = _services()
    for name, service in services.items():
        for needed, how in service.get("depends_on", {}).items():
            assert needed in services, f"{name} depends on unknown {needed}"
            if how["condition"] == "service_healthy":
                assert _healthy(services[needed]), f"{name} waits for {needed}: no healthcheck"
            else:
                assert how["condition"] == "service_completed_successfully"
                assert services[needed]["restart"] == "no", needed
    for name, service in _execflow_services().items():
        if name != "seed":
            assert service["depends_on"]["seed"]["condition"] == "service_completed_successfully"
    dispatcher = services["dispatcher"]["depends_on"]
    assert {f"worker-{w.value}" for w in Worker} | {"db-writer"} <= set(dispatcher)


def _metrics_services() -> dict[str, str]:
    """Service name -> the port its /metrics answers on, from the health checks."""
    ports = {}
    for name, service in _execflow_services().items():
        if _healthy(service):
            probe = " ".join(service["healthcheck"]["test"])
            ports[name] = probe.split("127.0.0.1:", 1)[1].split("/", 1)[0]
    return ports


def test_prometheus_scrapes_every_process_that_serves_metrics() -> None:
    targets = yaml.safe_load((DEPLOY / "compose" / "prometheus-targets.yml").read_text())
    scraped = {t for group in targets for t in group["targets"]}
    profiled = {name for name, s in _services().items() if "profiles" in s}
    ports = _metrics_services()
    assert scraped == {f"{name}:{port}" for name, port in ports.items() if name not in profiled}
    # a service of a profile is scraped once it runs: the file says how to add it
    text = (DEPLOY / "compose" / "prometheus-targets.yml").read_text()
    for name in profiled & set(ports):
        assert f"#   - targets: [{name}:{ports[name]}]" in text
    for name in _metrics_services():
        if name != "api":
            env = _execflow_services()[name]["environment"]
            assert env["EXECFLOW_METRICS_PORT"] == METRICS_PORT
            assert env["EXECFLOW_METRICS_HOST"] == "0.0.0.0"
    mounts = _services()["prometheus"]["volumes"]
    assert "./compose/prometheus-targets.yml:/etc/prometheus/targets/execflow.yml:ro" in mounts
    assert "./prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in mounts


def test_prometheus_config_passes_promtool_as_mounted(tmp_path: Path) -> None:
    """The config, its rules and the compose targets laid out as the container sees them."""
    promtool = _tool("promtool", "prometheus")
    etc = tmp_path / "prometheus"
    (etc / "targets").mkdir(parents=True)
    for mount in _services()["prometheus"]["volumes"]:
        source, _, target = str(mount).partition(":")
        if source.startswith("."):
            destination = etc / target.split(":")[0].removeprefix("/etc/prometheus/")
            shutil.copy(DEPLOY / source, destination)
    result = subprocess.run(
        [promtool, "check", "config", str(etc / "prometheus.yml")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout and "rule" in result.stdout


def test_grafana_is_provisioned_with_the_prometheus_service_and_the_dashboard() -> None:
    grafana = _services()["grafana"]
    mounts = {
        str(m).split(":")[1]: DEPLOY / str(m).split(":")[0]
        for m in grafana["volumes"]
        if str(m).startswith(".")
    }
    sources = mounts["/etc/grafana/provisioning/datasources"]
    datasources = [yaml.safe_load(p.read_text())["datasources"] for p in sources.glob("*.yml")]
    [prometheus] = [d for group in datasources for d in group if d["type"] == "prometheus"]
    assert prometheus["url"] == "http://prometheus:9090" and prometheus["isDefault"]
    providers = mounts["/etc/grafana/provisioning/dashboards"]
    [provider] = [
        p for f in providers.glob("*.yml") for p in yaml.safe_load(f.read_text())["providers"]
    ]
    dashboards = {target: source for target, source in mounts.items() if target.endswith(".json")}
    assert dashboards, "no dashboard mounted"
    for target, source in dashboards.items():
        assert str(Path(target).parent) == provider["options"]["path"]
        assert json.loads(source.read_text())["uid"] == "execflow-pipeline"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home in dashboards


def test_the_lp_gateway_sample_settings_load() -> None:
    from execflow.settings import load_settings

    gateway = _services()["lp-gateway"]
    path, params = parse_command(gateway["command"])
    assert path == ["run", "lp-gateway"]
    assert "./lp.toml:/etc/execflow/lp.toml:ro" in gateway["volumes"]
    settings = load_settings(DEPLOY / "lp.toml")
    assert params["lp"] in settings.lps


def test_docker_compose_accepts_the_file() -> None:
    """Debian's docker-compose (v1) checks the file against the compose schema offline."""
    compose = _tool("docker-compose", "docker-compose")
    result = subprocess.run(
        [compose, "-f", str(COMPOSE), "--profile", "fix", "--profile", "cli", "config", "-q"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
