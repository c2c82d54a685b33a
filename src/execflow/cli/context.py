"""What the root command hands down: the settings (built once), ``--debug`` and ``--quiet``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from execflow.settings import Settings, load_settings

__all__ = ["CliState", "settings_from"]


@dataclass
class CliState:
    """Options of the root command; settings are loaded lazily, once."""

    config_file: Path | None
    debug: bool = False
    quiet: bool = False
    """No progress bars (they are drawn on stderr, and only at a terminal anyway)."""
    _settings: Settings | None = None

    def settings(self) -> Settings:
        """The process settings; an invalid value raises ``ConfigError`` naming the setting.

        The root command turns it into one line on stderr and exit code 2
        (``execflow.cli.failures``).
        """
        if self._settings is None:
            self._settings = load_settings(self.config_file)
        return self._settings

    @property
    def loaded_settings(self) -> Settings | None:
        """The settings if a command loaded them (for the failure line), else ``None``."""
        return self._settings


def settings_from(ctx: typer.Context) -> Settings:
    """The settings of the running command."""
    state = ctx.find_root().obj
    if not isinstance(state, CliState):
        state = CliState(config_file=None)
        ctx.find_root().obj = state
    return state.settings()
