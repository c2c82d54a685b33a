"""The platform API from the command line: ``run api``, ``serve``, ``api-key ...``.

::

    execflow run api [--host 127.0.0.1] [--port 8080]    # on the configured backends
    execflow serve                                       # pipeline + LP simulator + API
    execflow api-key create --name desk --scopes read,trade --accounts live:6,live:7
    execflow api-key list
    execflow api-key revoke KEY_ID
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import typer
from rich.console import Console

from execflow.api.context import COMPONENT
from execflow.api.keys import mint_key, parse_scopes
from execflow.api.server import ApiServer, api_context, api_store
from execflow.api.views import key_out
from execflow.backends.api_store import ApiKeyRecord
from execflow.cli.context import settings_from
from execflow.cli.failures import process_logging
from execflow.cli.run import masked_settings, run_with_services
from execflow.metrics import Metrics
from execflow.pipeline.embedded import EmbeddedPipeline
from execflow.pipeline.rebuild import rebuild_if_needed
from execflow.pipeline.seed import apply_seed, read_seed
from execflow.pipeline.services import Services, open_services
from execflow.safetext import json_text, safe_text
from execflow.settings import Settings
from execflow.sim.config import LpConfig
from execflow.sim.refdata import demo_seed
from execflow.sim.runtime import Simulator

__all__ = ["api_key_app", "run_api", "serve_command"]

api_key_app = typer.Typer(help="Create, list and revoke platform API keys.", no_args_is_help=True)

_HOST = typer.Option(None, "--host", help="Bind address (default: settings, 127.0.0.1).")
_PORT = typer.Option(None, "--port", "-p", min=0, max=65535, help="Port (default: settings).")


def _with(settings: Settings, host: str | None, port: int | None) -> Settings:
    update: dict[str, object] = {}
    if host is not None:
        update["api_host"] = host
    if port is not None:
        update["api_port"] = port
    return settings.model_copy(update=update) if update else settings


def _listening(settings: Settings) -> None:
    Console(stderr=True).print(
        f"execflow API on http://{settings.api_host}:{settings.api_port} "
        "(OpenAPI: /openapi.json, docs: /docs, ops console: /console/); Ctrl-C stops"
    )


def run_api(
    ctx: typer.Context,
    host: str | None = _HOST,
    port: int | None = _PORT,
    instance: int | None = typer.Option(None, "--instance", "-i", min=1),
) -> None:
    """Serve the platform API on the configured backends (log: api.log)."""
    settings = _with(settings_from(ctx), host, port)
    if instance is not None:
        settings = settings.model_copy(update={"instance": instance})

    async def body(services: Services) -> str:
        context = api_context(services)
        await rebuild_if_needed(services.state, services.database, settings.seed_file, context.log)
        context.readiness.state_rebuilt = True
        _listening(settings)
        return await ApiServer(context).serve()

    _process(settings, body)


def serve_command(
    ctx: typer.Context,
    host: str | None = _HOST,
    port: int | None = _PORT,
    accounts: int = typer.Option(20, min=1, help="Demo accounts to seed (live:1, live:2, ...)."),
    seed: int = typer.Option(42, help="Seed of the simulated prices and LP."),
) -> None:
    """Pipeline + LP simulator + API in one process: try the API with no server."""
    settings = _with(settings_from(ctx), host, port)

    async def body(services: Services) -> str:
        sim = Simulator(
            services.bus,
            services.state,
            services.logger("simulator"),
            LpConfig(),
            seed=seed,
            clock=services.clock,
            metrics=services.metrics,
        )
        pipeline = EmbeddedPipeline(services, lp=sim)
        await pipeline.start()
        try:
            reference = (
                await read_seed(settings.seed_file)
                if settings.seed_file is not None
                else demo_seed(accounts, random.Random(seed + 2), sim.feed)
            )
            await apply_seed(reference, services.state, services.database)
            context = api_context(services)
            context.readiness.state_rebuilt = True
            _listening(settings)
            return await ApiServer(context).serve()
        finally:
            await pipeline.stop()

    _process(settings, body)


def _process(settings: Settings, body: Callable[[Services], Awaitable[str]]) -> None:
    """Logging for ``api``, its metrics, PROCESS:START / STOP (or FAILED) around ``body``."""
    with process_logging(settings, COMPONENT) as logs:
        log = logs.logger(COMPONENT)
        metrics = Metrics(COMPONENT)
        log.info("PROCESS:START", component=COMPONENT, **masked_settings(settings))

        async def main() -> str:
            async with open_services(settings, logs, metrics=metrics) as services:
                return await body(services)

        stopped_by = asyncio.run(main())
        log.info("PROCESS:STOP", component=COMPONENT, instance=settings.instance, signal=stopped_by)


# -- keys ----------------------------------------------------------------------------------------


@api_key_app.command("create")
def create_key(
    ctx: typer.Context,
    scopes: str = typer.Option(..., "--scopes", help="read, trade, admin (comma-separated)."),
    accounts: str = typer.Option(..., "--accounts", help="live:6,live:7 or '*' for every one."),
    name: str = typer.Option("cli", "--name", help="A label for the key."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Create a key and print its token: shown this once, stored only as a scrypt hash."""
    settings = settings_from(ctx)
    try:
        chosen = parse_scopes([scopes])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--scopes") from None
    listed = [a.strip() for a in accounts.split(",") if a.strip()]
    if not listed:
        raise typer.BadParameter("at least one account", param_hint="--accounts")

    async def body(services: Services) -> tuple[str, dict[str, object]]:
        minted = await asyncio.to_thread(mint_key, name, chosen, listed, services.clock.now())
        await api_store(services).add_key(minted.record)
        services.logger(COMPONENT).info(
            "API:KEY_CREATED",
            key_id=minted.record.key_id,
            by="cli",
            scopes=",".join(minted.record.scopes),
            accounts=",".join(minted.record.accounts),
        )
        return minted.token, key_out(minted.record).model_dump(mode="json")

    token, shown = run_with_services(settings, COMPONENT, body)
    if as_json:
        typer.echo(json_text({**shown, "token": token}))
        return
    typer.echo(safe_text(f"key_id={shown['key_id']} scopes={','.join(chosen)} accounts={accounts}"))
    typer.echo("token (shown once, keep it now):")
    typer.echo(token)


@api_key_app.command("list")
def list_keys(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print as JSON.")
) -> None:
    """Every key, without secrets."""

    async def body(services: Services) -> list[ApiKeyRecord]:
        return await api_store(services).list_keys()

    records = run_with_services(settings_from(ctx), COMPONENT, body)
    if as_json:
        typer.echo(json_text([key_out(r).model_dump(mode="json") for r in records]))
        return
    for r in records:
        revoked = f" revoked_at={r.revoked_at.isoformat()}" if r.revoked_at else ""
        line = (
            f"{r.key_id} name={r.name} scopes={','.join(r.scopes)} "
            f"accounts={','.join(r.accounts)}{revoked}"
        )
        typer.echo(safe_text(line))


@api_key_app.command("revoke")
def revoke_key(ctx: typer.Context, key_id: str = typer.Argument(...)) -> None:
    """Revoke a key (every API instance refuses it within api_key_cache_s)."""

    async def body(services: Services) -> bool:
        revoked = await api_store(services).revoke_key(key_id, services.clock.now())
        if revoked:
            services.logger(COMPONENT).info("API:KEY_REVOKED", key_id=key_id, by="cli")
        return revoked

    if not run_with_services(settings_from(ctx), COMPONENT, body):
        typer.echo(safe_text(f"no active key {key_id}"), err=True)
        raise typer.Exit(code=1)
    typer.echo(safe_text(f"revoked {key_id}"))
