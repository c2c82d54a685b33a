"""Root of the ``execflow`` CLI; sub-command groups live in their own modules."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

import execflow.cli.logs_read  # noqa: F401 - imported for the reading commands it adds to logs_app
from execflow import __version__
from execflow.cli.api import api_key_app, run_api, serve_command
from execflow.cli.audit import audit_app
from execflow.cli.bench import bench_command
from execflow.cli.context import CliState, settings_from
from execflow.cli.demo import demo_command
from execflow.cli.dlq import dlq_app
from execflow.cli.failures import FailureBoundary, library_stderr
from execflow.cli.logs import logs_app
from execflow.cli.lp import lp_app
from execflow.cli.orders import orders_app
from execflow.cli.reads import account_app, list_orders, show_order
from execflow.cli.reconcile import reconcile_command
from execflow.cli.resolve import resolve_command
from execflow.cli.run import run_app
from execflow.cli.simulate import simulate_command
from execflow.cli.state import seed_app, state_app
from execflow.cli.stuck import list_app
from execflow.cli.supervisor import run_all
from execflow.logs.masking import mask_url
from execflow.safetext import cell

__all__ = ["app", "main"]

app = typer.Typer(
    name="execflow",
    help="Provider execution-report pipeline: dispatcher, seven workers, exact money, full trail.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=FailureBoundary,
)


app.add_typer(logs_app, name="logs")
app.add_typer(run_app, name="run")
run_app.command("all")(run_all)
run_app.command("api")(run_api)
app.add_typer(orders_app, name="order")
orders_app.command("resolve")(resolve_command)
orders_app.command("show")(show_order)
app.add_typer(list_app, name="orders")
list_app.command("list")(list_orders)
app.add_typer(account_app, name="account")
app.add_typer(dlq_app, name="dlq")
app.add_typer(audit_app, name="audit")
app.add_typer(lp_app, name="lp")
app.add_typer(state_app, name="state")
app.add_typer(seed_app, name="seed")
app.command("bench")(bench_command)
app.command("demo")(demo_command)
app.command("reconcile")(reconcile_command)
app.command("simulate")(simulate_command)
app.command("serve")(serve_command)
app.add_typer(api_key_app, name="api-key")


def _print_version(value: bool) -> None:
    """``--version``: print the version and stop before any sub-command runs."""
    if value:
        Console().print(__version__, highlight=False)
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", "-c", help="TOML settings file (else EXECFLOW_CONFIG)."
    ),
    debug: bool = typer.Option(
        False, "--debug", help="On a failure, print the traceback before the one-line error."
    ),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="No progress bars on stderr (none are drawn off a terminal)."
    ),
    _version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print the execflow version and exit.",
    ),
) -> None:
    """Options shared by every command."""
    ctx.obj = CliState(config_file=config, debug=debug, quiet=quiet)
    ctx.with_resource(library_stderr(debug))


@app.command()
def version() -> None:
    """Print the execflow version."""
    Console().print(__version__, highlight=False)


@app.command("config")
def show_config(ctx: typer.Context) -> None:
    """Validate the settings and print them, secrets masked."""
    settings = settings_from(ctx)
    table = Table("setting", "value", title="execflow settings")
    for name, value in settings.model_dump().items():
        shown = mask_url(value) if isinstance(value, str) else str(value)
        table.add_row(name, cell(shown))
    Console().print(table)


def main() -> None:
    """Console-script entry point."""
    app()
