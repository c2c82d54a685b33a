"""Text and JSON lines exactly as docs/log-format.md says; escaping and masking."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from execflow.logs import log_context, masking
from execflow.logs.formatting import (
    ECS_VERSION,
    Timestamper,
    json_line,
    text_fields,
    text_value,
)

from .conftest import SystemFactory, split_lines

TEXT_LINE = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) (?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) "
    r"(?P<logger>[A-Za-z0-9_.:-]+) \[(?P<tag>[^\]]+)\](?P<fields>( [A-Za-z_][A-Za-z0-9_.]*="
    r'([^ "=\\\x00-\x1f\x7f]+|"([^"\\]|\\.)*"))*)$'
)
FIELD = re.compile(r' ([A-Za-z_][A-Za-z0-9_.]*)=([^ "]+|"(?:[^"\\]|\\.)*")')


def parse_fields(line: str) -> dict[str, str]:
    """The reader's side of the contract: bare values as is, quoted ones through json.loads."""
    match = TEXT_LINE.match(line)
    assert match, line
    return {
        key: json.loads(value) if value.startswith('"') else value
        for key, value in FIELD.findall(match["fields"])
    }


def test_text_line_matches_the_documented_example(
    make_system: SystemFactory, log_dir: Path
) -> None:
    system = make_system("worker_reject")
    with log_context(trace_id="6f1c"):
        system.events.success(
            "REJECT:SUCCESS",
            processing_time_ms=22.8,
            order_id=3163458366000,
            user="live:6",
            symbol="EURUSD",
            rejection_type="ORDER_PLACEMENT",
        )
    system.flush()
    line = split_lines((log_dir / "worker_reject.log").read_bytes())[0]
    match = TEXT_LINE.match(line)
    assert match is not None, line
    assert match["level"] == "INFO"
    assert match["logger"] == "provider.worker.reject"
    assert match["tag"] == "REJECT:SUCCESS"
    assert match["fields"] == (
        " order_id=3163458366000 user=live:6 symbol=EURUSD rejection_type=ORDER_PLACEMENT"
        " processing_time_ms=22.8 trace_id=6f1c"
    )


def test_json_line_uses_ecs_names_and_decimal_strings(
    make_system: SystemFactory, log_dir: Path
) -> None:
    system = make_system("worker_open", log_format="json")
    with log_context(trace_id="t-1"):
        system.events.info("OPEN:RECEIVED", order_id="3163458366000", price=Decimal("1.10450"))
        try:
            raise ValueError("boom")
        except ValueError as exc:
            system.events.error("OPEN:ERROR", exc=exc, order_id="1")
    system.flush()
    first, second = (
        orjson.loads(x) for x in split_lines((log_dir / "worker_open.log").read_bytes())
    )
    assert list(first)[:8] == [
        "@timestamp", "log.level", "log.logger", "event.action",
        "message", "ecs.version", "service.name", "trace.id",
    ]  # fmt: skip
    assert first["message"] == "OPEN:RECEIVED"
    assert first["ecs.version"] == ECS_VERSION and first["service.name"] == "execflow"
    assert second["message"] == "OPEN:ERROR: boom"
    assert first["log.level"] == "INFO"
    assert first["log.logger"] == "provider.worker.open"
    assert first["event.action"] == "OPEN:RECEIVED"
    assert first["trace.id"] == "t-1"
    assert first["price"] == "1.10450"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", first["@timestamp"])
    assert second["error.type"] == "ValueError"
    assert second["error.message"] == "boom"
    assert "Traceback" in second["error.stack_trace"]


def test_values_quoted_exactly_when_needed() -> None:
    assert text_value("EURUSD") == "EURUSD"
    assert text_value("live:6") == "live:6"
    assert text_value(Decimal("1.2300")) == "1.2300"
    assert text_value(22.8) == "22.8"
    assert text_value(True) == "true"
    assert text_value(None) == "null"
    assert text_value("") == '""'
    assert text_value("two words") == '"two words"'
    assert text_value("a=b") == '"a=b"'
    assert text_value('say "hi"') == '"say \\"hi\\""'
    assert text_value("back\\slash") == '"back\\\\slash"'


def test_no_value_can_forge_a_line(make_system: SystemFactory, log_dir: Path) -> None:
    evil = [
        "x\n2026-01-01T00:00:00.000000Z ERROR provider.dispatcher [FAKE] order_id=1",
        "carriage\rreturn",
        "\x1b[31mred\x1b[0m",
        "nul\x00byte",
        "del\x7f c1\x85 ls\u2028 ps\u2029",
        "tab\there",
        "\ud800 lone surrogate",
    ]
    system = make_system("dispatcher")
    for value in evil:
        system.events.info("DISPATCH:ROUTED", note=value, **{"evil key\n": value})
    system.flush()
    data = (log_dir / "dispatcher.log").read_bytes()
    lines = split_lines(data)
    assert len(lines) == len(evil)
    assert b"\r" not in data and b"\x1b" not in data and b"\x00" not in data
    for value, line in zip(evil, lines, strict=True):
        fields = parse_fields(line)
        assert fields["note"] == value
        assert fields["evil_key_"] == value


def test_secrets_are_masked_in_text_and_json(make_system: SystemFactory, log_dir: Path) -> None:
    system = make_system("intake")
    system.events.info(
        "INTAKE:CONNECT",
        broker_url="amqp://guest:s3cret@rabbit:5672/",
        password="hunter2",
        api_key="k-123",
        auth_token="tok",
        client_secret="sh",
        nested={"password": "p", "url": "redis://u:pw@h/0"},
    )
    system.flush()
    text = (log_dir / "intake.log").read_text()
    for secret in ("s3cret", "hunter2", "k-123", "tok ", "sh ", "=p", "pw@"):
        assert secret not in text
    assert "amqp://guest:***@rabbit:5672/" in text
    fields = parse_fields(text.rstrip("\n"))
    assert fields["password"] == "***"
    assert fields["api_key"] == "***"
    line = json_line(
        "ts", "INFO", "provider.intake", "X", {"db_password": "p", "u": "x://a:b@c"}, {}
    )
    obj = orjson.loads(line)
    assert obj["db_password"] == "***"
    assert obj["u"] == "x://a:***@c"


def test_secret_key_answers_are_the_same_remembered_and_past_the_bound() -> None:
    """``is_secret_key`` remembers its answers (bounded); each is the pattern's, every time."""
    masking.is_secret_key.cache_clear()
    names = ["password", "Client_Secret", "lots", "AUTH_TOKEN", "apikey", "price", "api_key"]
    expected = [True, True, False, True, True, False, True]
    assert [masking.is_secret_key(n) for n in names] == expected
    assert masking.is_secret_key.cache_info().currsize == len(names)
    assert [masking.is_secret_key(n) for n in names] == expected  # remembered
    assert masking.is_secret_key.cache_info().hits == len(names)
    # past the bound the oldest answers go, and every answer is still the pattern's
    bound = masking.is_secret_key.cache_info().maxsize
    assert bound is not None
    for n in range(bound + 1):
        masking.is_secret_key(f"field_{n}")
    assert masking.is_secret_key.cache_info().currsize == bound
    assert [masking.is_secret_key(n) for n in names] == expected
    quoted = text_value({"lots": "1", "Client_Secret": "x"})
    assert json.loads(quoted) == '{"lots":"1","Client_Secret":"***"}'


def test_a_collection_orjson_cannot_encode_is_still_one_value() -> None:
    """An int beyond 64 bits inside a list or dict: no exception reaches the caller."""
    huge = 2**70
    assert text_value([1, huge]) == f"[1,{huge}]"
    quoted = text_value({"n": huge, "password": "x"})
    assert json.loads(quoted) == f'{{"n":{huge},"password":"***"}}'
    line = json_line("2026-01-01T00:00:00.000000Z", "INFO", "l", "T", {"v": [huge]}, {})
    assert json.loads(line)["v"] == f"[{huge}]"


def test_context_fields_follow_explicit_ones_and_do_not_duplicate() -> None:
    rendered = text_fields({"order_id": 7}, {"trace_id": "t", "order_id": 9, "user": "live:1"})
    assert rendered == " order_id=7 user=live:1 trace_id=t"


def test_timestamp_has_microseconds_and_z() -> None:
    stamp = Timestamper()()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp)


def test_calculation_goes_to_orders_calculated_as_json(
    make_system: SystemFactory, log_dir: Path
) -> None:
    system = make_system("worker_open")
    with log_context(trace_id="tr", order_id="42"):
        system.events.calculation(
            "ORDER_OPEN_CALC", margin=Decimal("108.45"), lots=Decimal("0.10"), leverage=100
        )
    system.flush()
    (line,) = split_lines((log_dir / "orders_calculated.log").read_bytes())
    obj = orjson.loads(line)
    assert obj["event.action"] == "ORDER_OPEN_CALC"
    assert obj["margin"] == "108.45"
    assert obj["lots"] == "0.10"
    assert obj["leverage"] == 100
    assert obj["order_id"] == "42"
    assert obj["trace.id"] == "tr"
    assert (log_dir / "worker_open.log").read_bytes() == b""


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_bidi_controls_are_escaped_so_a_line_reads_in_the_order_it_was_written(
    make_system: SystemFactory, log_dir: Path, fmt: str
) -> None:
    # Trojan-source style: U+202E would show "order_id=1 amount=001" as its mirror.
    bidi = "\u202e\u2066\u2067\u2068\u2069\u202a\u202b\u202c\u202d\u200e\u200f\u061c"
    system = make_system("dispatcher", log_format=fmt)
    system.events.info("DISPATCH:ROUTED", note=f"rtl{bidi}end")
    system.flush()
    data = (log_dir / "dispatcher.log").read_bytes()
    assert not any(ch.encode() in data for ch in bidi)
    assert b"\\u202e" in data and b"\\u061c" in data
    [line] = split_lines(data)
    value = orjson.loads(line)["note"] if fmt == "json" else parse_fields(line)["note"]
    assert value == f"rtl{bidi}end"


def test_json_user_is_ecs_user_id_and_fixed_keys_are_never_overwritten() -> None:
    line = json_line(
        "2026-01-01T00:00:00.000000Z", "INFO", "provider.worker.open", "OPEN:SUCCESS",
        {"order_id": "1", "user": "demo:3", "message": "mine", "service.name": "x"},
        {"trace_id": "t"},
    )  # fmt: skip
    obj = orjson.loads(line)
    assert "user" not in obj and obj["user.id"] == "demo:3"
    assert obj["message"] == "OPEN:SUCCESS" and obj["service.name"] == "execflow"
    assert obj["labels.message"] == "mine" and obj["labels.service.name"] == "x"
    bridged = orjson.loads(
        json_line(
            "2026-01-01T00:00:00.000000Z",
            "WARNING",
            "aio_pika",
            "LOG",
            {"msg": "connection lost"},
            {},
        )
    )
    assert bridged["message"] == "LOG: connection lost"


def test_text_lines_keep_user() -> None:
    assert text_fields({"user": "demo:3"}, {}) == " user=demo:3"
