"""LP settings: TOML-friendly sessions, a password that never shows, routing, per-LP logs."""

from __future__ import annotations

from pathlib import Path

import pytest

from execflow.errors import ConfigError
from execflow.logs.catalog import file_name
from execflow.logtools.files import parse_name
from execflow.settings import LpRouting, load_settings

TOML = """
quote_max_age_s = 5
[lps.primebank]
host = "fix.example"
port = 9876
sender_comp_id = "BROKER1"
target_comp_id = "PRIME"
password = "hunter2-secret"
session_start = "21:05:00"
session_end = "21:00:00"
symbols = ["EURUSD", "XAUUSD"]

[lp_routing]
default = "primebank"
routes = { "vip:*" = "tier1", "*:XAUUSD" = "metals", "vip:XAUUSD" = "tier1metals" }
"""


def test_lps_from_toml_with_the_password_masked_everywhere(tmp_path: Path) -> None:
    path = tmp_path / "execflow.toml"
    path.write_text(TOML)
    settings = load_settings(path)
    lp = settings.lps["primebank"]
    assert (lp.host, lp.port, lp.symbols) == ("fix.example", 9876, ("EURUSD", "XAUUSD"))
    assert lp.password is not None and lp.password.get_secret_value() == "hunter2-secret"
    for shown in (repr(settings), str(settings.model_dump()), repr(lp), str(lp)):
        assert "hunter2" not in shown
    assert settings.quote_max_age_s == 5


@pytest.mark.parametrize(
    ("group", "symbol", "lp"),
    [
        ("vip", "XAUUSD", "tier1metals"),  # GROUP:SYMBOL first
        ("vip", "EURUSD", "tier1"),  # then GROUP:*
        ("pro", "XAUUSD", "metals"),  # then *:SYMBOL
        ("pro", "EURUSD", "primebank"),  # then the default
    ],
)
def test_routing_most_specific_first(tmp_path: Path, group: str, symbol: str, lp: str) -> None:
    path = tmp_path / "execflow.toml"
    path.write_text(TOML)
    assert load_settings(path).lp_routing.lp_for(group, symbol) == lp


def test_no_routing_means_the_shared_queue() -> None:
    assert not LpRouting().enabled
    assert LpRouting().lp_for("vip", "EURUSD") is None


@pytest.mark.parametrize(
    "bad",
    [
        'lps = { "9lp" = { port = 1, sender_comp_id = "A", target_comp_id = "B" } }',
        'lps = { x = { port = 1, sender_comp_id = "A", target_comp_id = "B", '
        'session_start = "01:00:00" } }',
        'lp_routing = { routes = { "EURUSD" = "x" } }',
        'lp_routing = { routes = { "vip:*" = "not an lp" } }',
    ],
)
def test_invalid_lp_settings_name_the_setting(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(bad + "\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert "lp" in caught.value.message


def test_per_lp_log_files_are_named_and_read_back() -> None:
    assert file_name("lp_gateway", 1, "primebank") == "lp_gateway-primebank.log"
    assert file_name("lp_gateway", 2, "primebank") == "lp_gateway-primebank-2.log"
    assert file_name("provider_errors", 1, "primebank") == "provider_errors.log"
    found = parse_name(Path("lp_gateway-primebank-2.log.3.gz"))
    assert found is not None
    assert (found.stem, found.qualifier, found.instance, found.generation) == (
        "lp_gateway",
        "primebank",
        2,
        3,
    )
    plain = parse_name(Path("worker_open-2.log"))
    assert plain is not None and (plain.stem, plain.qualifier, plain.instance) == (
        "worker_open",
        "",
        2,
    )


REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("document", ["README.md", "docs/lp-gateway.md"])
def test_the_documented_lp_configuration_loads(document: str, tmp_path: Path) -> None:
    """The TOML an operator copies from the README or the gateway's doc is valid as shown."""
    text = (REPO / document).read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```toml\n")[1:]]
    examples = [b for b in blocks if "[lps." in b]
    assert examples, f"{document} shows no [lps.NAME] example"
    for number, block in enumerate(examples):
        path = tmp_path / f"example-{number}.toml"
        path.write_text(block)
        settings = load_settings(path)
        assert settings.lps and settings.lp_routing.default in settings.lps
