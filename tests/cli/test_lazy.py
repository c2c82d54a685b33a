"""Sub-commands are imported when run (``cli.lazy``), and ``--help`` still lists them all."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer._click import Command
from typer.testing import CliRunner

from execflow.cli.app import app
from execflow.cli.lazy import LazyCommands, command

# what the root group offers, in the order --help lists it (as before commands were lazy)
ROOT = [
    "bench",
    "demo",
    "reconcile",
    "simulate",
    "serve",
    "version",
    "config",
    "logs",
    "run",
    "order",
    "orders",
    "account",
    "dlq",
    "audit",
    "lp",
    "state",
    "seed",
    "api-key",
]
GROUPS = {
    "run": ["dispatcher", "worker", "lp-gateway", "db-writer", "all", "api"],
    "order": ["resolve", "show"],
    "orders": ["list"],
    "logs": ["check", "cleanup", "trace", "stats", "tail", "errors", "report"],
}


def _imported_after(code: str) -> set[str]:
    listing = "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    probe = f"{code}\nimport json, sys\n{listing}"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_the_root_imports_no_command_module() -> None:
    imported = _imported_after("import execflow.cli.app")
    heavy = {"fastapi", "uvicorn", "starlette", "sqlalchemy", "alembic", "mako", "pygments"}
    assert imported & (heavy | {"rich", "redis", "aio_pika"}) == set()


def test_resolving_run_worker_loads_the_run_module_only() -> None:
    code = (
        "from typer.main import get_command\n"
        "from execflow.cli.app import app\n"
        "root = get_command(app)\n"
        "ctx = root.make_context('execflow', ['run', 'worker', '--help'], resilient_parsing=True)\n"
        "run = root.get_command(ctx, 'run')\n"
        "assert run.get_command(ctx, 'worker') is not None\n"
        "import sys\n"
        "assert 'execflow.cli.run' in sys.modules and 'execflow.cli.supervisor' not in sys.modules"
    )
    imported = _imported_after(code)
    assert imported & {"fastapi", "uvicorn", "starlette", "alembic", "mako", "rich"} == set()


def test_help_lists_every_command_in_order() -> None:
    result = CliRunner().invoke(app, ["--help"], terminal_width=200)
    assert result.exit_code == 0
    listed = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("│ ")]
    assert [name for name in listed if name in ROOT] == ROOT


@pytest.mark.parametrize("name", list(GROUPS))
def test_group_help_lists_the_commands_from_other_modules(name: str) -> None:
    result = CliRunner().invoke(app, [name, "--help"], terminal_width=200)
    assert result.exit_code == 0
    listed = {line.split()[1] for line in result.stdout.splitlines() if line.startswith("│ ")}
    assert set(GROUPS[name]) <= listed


def test_lazy_commands_build_once_and_only_when_asked() -> None:
    built: list[str] = []

    def counting() -> Command:
        built.append("v")
        return command("v", "execflow.cli.app:version")()

    commands = LazyCommands({}, {"v": counting, "w": command("w", "no.such.module:w")})
    assert list(commands) == ["v", "w"] and "w" in commands and built == []
    first = commands["v"]
    assert commands["v"] is first and built == ["v"]
    assert first.name == "v"
    del commands["w"]
    assert list(commands) == ["v"] and len(commands) == 1
    with pytest.raises(KeyError):
        commands["w"]
