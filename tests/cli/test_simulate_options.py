"""``execflow simulate``'s closing-out options reach the scenario driver."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from execflow.apps.standalone import SimulateOptions
from execflow.cli import simulate
from execflow.cli.app import app


def test_the_stall_window_and_the_overall_limit_reach_the_scenario(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[SimulateOptions] = []

    def run(settings: object, options: SimulateOptions, progress: object) -> None:
        seen.append(options)

    monkeypatch.setattr(simulate, "_run", run)
    argv = ["simulate", "--orders", "5", "--settle-stall", "7", "--settle-timeout", "90"]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    assert [(o.scenario.settle_stall_s, o.scenario.settle_timeout_s) for o in seen] == [(7, 90)]
    defaults = CliRunner().invoke(app, ["simulate", "--orders", "5"])
    assert defaults.exit_code == 0, defaults.output
    assert (seen[1].scenario.settle_stall_s, seen[1].scenario.settle_timeout_s) == (60, 120)


def test_a_stall_window_under_a_second_is_refused_naming_the_option() -> None:
    result = CliRunner().invoke(app, ["simulate", "--orders", "5", "--settle-stall", "0"])
    assert result.exit_code == 2
    assert "--settle-stall" in result.output
