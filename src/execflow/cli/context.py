"""What the root command hands to every sub-command: the settings, built once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer
from rich.console import Console

from execflow.errors import ConfigError
from execflow.settings import Settings, load_settings

__all__ = ["CliState", "settings_from"]

err_console = Console(stderr=True)


@dataclass
class CliState:
    """Options of the root command; settings are loaded lazily, once."""

    config_file: Path | None
    _settings: Settings | None = None

    def settings(self) -> Settings:
        """The process settings; an invalid value exits 2 with the setting's name."""
        if self._settings is None:
            try:
                self._settings = load_settings(self.config_file)
            except ConfigError as exc:
                err_console.print(f"[bold red]configuration error:[/] {exc.message}")
                raise typer.Exit(code=2) from None
        return self._settings


def settings_from(ctx: typer.Context) -> Settings:
    """The settings of the running command."""
    state = ctx.find_root().obj
    if not isinstance(state, CliState):
        state = CliState(config_file=None)
        ctx.find_root().obj = state
    return state.settings()
