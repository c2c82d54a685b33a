"""Root of the ``execflow`` CLI; sub-command groups live in their own modules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from execflow import __version__
from execflow.cli.context import CliState, settings_from
from execflow.cli.failures import FailureBoundary, library_stderr
from execflow.cli.lazy import LazyCommands, Loader, command, group

__all__ = ["app", "main"]

_CLI = "execflow.cli"
# Every sub-command and where it lives, in the order ``--help`` lists them; a module is
# imported only when one of its commands runs (cli.lazy). ``version`` and ``config`` are
# defined below and slot in after ``serve``.
_BEFORE_OWN: dict[str, Loader] = {
    "bench": command("bench", f"{_CLI}.bench:bench_command"),
    "demo": command("demo", f"{_CLI}.demo:demo_command"),
    "reconcile": command("reconcile", f"{_CLI}.reconcile:reconcile_command"),
    "simulate": command("simulate", f"{_CLI}.simulate:simulate_command"),
    "serve": command("serve", f"{_CLI}.api:serve_command"),
}
_AFTER_OWN: dict[str, Loader] = {
    "logs": group("logs", f"{_CLI}.logs:logs_app", also=f"{_CLI}.logs_read"),
    "run": group(
        "run",
        f"{_CLI}.run:run_app",
        {
            "all": command("all", f"{_CLI}.supervisor:run_all"),
            "api": command("api", f"{_CLI}.api:run_api"),
        },
    ),
    "order": group(
        "order",
        f"{_CLI}.orders:orders_app",
        {
            "resolve": command("resolve", f"{_CLI}.resolve:resolve_command"),
            "show": command("show", f"{_CLI}.reads:show_order"),
        },
    ),
    "orders": group(
        "orders", f"{_CLI}.stuck:list_app", {"list": command("list", f"{_CLI}.reads:list_orders")}
    ),
    "account": group("account", f"{_CLI}.reads:account_app"),
    "dlq": group("dlq", f"{_CLI}.dlq:dlq_app"),
    "audit": group("audit", f"{_CLI}.audit:audit_app"),
    "lp": group("lp", f"{_CLI}.lp:lp_app"),
    "state": group("state", f"{_CLI}.state:state_app"),
    "seed": group("seed", f"{_CLI}.state:seed_app"),
    "api-key": group("api-key", f"{_CLI}.api:api_key_app"),
}


class _Root(FailureBoundary):
    """The root group: its own commands built, every other one loaded when resolved."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        own = dict(self.commands)
        loaders: dict[str, Loader] = {**_BEFORE_OWN, **{n: _built(c) for n, c in own.items()}}
        self.commands = LazyCommands({}, {**loaders, **_AFTER_OWN})


def _built(found: Any) -> Loader:
    return lambda: found


app = typer.Typer(
    name="execflow",
    help="Provider execution-report pipeline: dispatcher, seven workers, exact money, full trail.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=_Root,
)


def _print_version(value: bool) -> None:
    """``--version``: print the version and stop before any sub-command runs."""
    if value:
        typer.echo(__version__)
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
    typer.echo(__version__)


@app.command("config")
def show_config(ctx: typer.Context) -> None:
    """Validate the settings and print them, secrets masked."""
    from rich.console import Console
    from rich.table import Table

    from execflow.logs.masking import mask_url
    from execflow.safetext import cell

    settings = settings_from(ctx)
    table = Table("setting", "value", title="execflow settings")
    for name, value in settings.model_dump().items():
        shown = mask_url(value) if isinstance(value, str) else str(value)
        table.add_row(name, cell(shown))
    Console().print(table)


def main() -> None:
    """Console-script entry point."""
    app()
