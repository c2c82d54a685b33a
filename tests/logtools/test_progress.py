"""Progress of long commands: a bar on stderr at a terminal, none off one or with --quiet.

A terminal is simulated with Rich's ``TTY_COMPATIBLE=1``; stdout must stay the bare
result either way (``--json`` output parses).
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
import typer
from rich.console import Console
from rich.progress import Progress
from typer.testing import CliRunner

from execflow.cli.app import app
from execflow.cli.context import CliState
from execflow.cli.progress import ScanBar, phase_progress, step_progress
from execflow.logtools.files import discover
from execflow.logtools.scan import map_files
from tests.logtools.pipeline_logs import Written


def _invoke(args: list[str], tty: bool) -> tuple[int, str, str]:
    env = {"TTY_COMPATIBLE": "1" if tty else "0", "FORCE_COLOR": None, "NO_COLOR": None}
    result = CliRunner().invoke(app, args, env=env)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("command", ["stats", "errors"])
def test_bar_on_stderr_at_a_terminal_only(command: str, mixed_logs: Written) -> None:
    args = ["logs", command, "--json", "--dir", str(mixed_logs.directory)]
    code, out, err = _invoke(args, tty=True)
    assert code == 0
    json.loads(out)  # the bar never reaches stdout
    assert "reading logs" in err
    code, out, err = _invoke(["--quiet", *args], tty=True)
    assert code == 0 and err == ""
    json.loads(out)
    code, out, err = _invoke(args, tty=False)
    assert code == 0 and err == ""
    json.loads(out)


def test_report_bar_and_its_line(mixed_logs: Written, tmp_path: Path) -> None:
    out_file = tmp_path / "r.html"
    args = ["logs", "report", "--dir", str(mixed_logs.directory), "--out", str(out_file)]
    code, _, err = _invoke(args, tty=True)
    assert code == 0 and "reading logs" in err and out_file.exists()
    code, _, err = _invoke(["-q", *args], tty=True)
    assert code == 0 and "reading logs" not in err and "wrote" in err


def test_scan_bar_counts_every_byte_of_every_scan(mixed_logs: Written) -> None:
    files = discover(mixed_logs.directory)
    with Progress(console=Console(file=io.StringIO()), auto_refresh=False) as progress:
        task = progress.add_task("t", total=None)
        bar = ScanBar(progress, task)
        for _ in range(2):  # a report runs several scans on one bar
            map_files(lambda f: f.name, files, jobs=1, progress=bar)
        state = progress.tasks[0]
        expected = 2 * sum(f.content_size for f in files)
        assert state.total == expected and state.completed == expected


def _tiny_app() -> typer.Typer:
    """A root like execflow's (``--quiet`` in ``CliState``) over two progress helpers."""
    tiny = typer.Typer()

    @tiny.callback()
    def root(ctx: typer.Context, quiet: bool = typer.Option(False, "--quiet")) -> None:
        ctx.obj = CliState(config_file=None, quiet=quiet)

    @tiny.command()
    def phases(ctx: typer.Context) -> None:
        with phase_progress(ctx, {"orders": "placing orders"}) as update:
            if update is not None:
                update("orders", 3, 5)
        sys.stdout.write("result\n")

    @tiny.command()
    def steps(ctx: typer.Context) -> None:
        with step_progress(ctx) as step:
            if step is not None:
                step("embedded pass")
        sys.stdout.write("result\n")

    return tiny


@pytest.mark.parametrize("command", ["phases", "steps"])
def test_simulate_and_bench_style_progress(command: str) -> None:
    tiny = _tiny_app()
    for tty, args, drawn in (
        (True, [command], True),
        (True, ["--quiet", command], False),
        (False, [command], False),
    ):
        env = {"TTY_COMPATIBLE": "1" if tty else "0", "FORCE_COLOR": None, "NO_COLOR": None}
        result = CliRunner().invoke(tiny, args, env=env)
        assert result.exit_code == 0, result.output
        assert result.stdout == "result\n"
        assert (result.stderr != "") is drawn, result.stderr
