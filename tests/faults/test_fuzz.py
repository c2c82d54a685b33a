"""Fuzzing the report normaliser, the routing decision and the dispatcher end to end.

Whatever the LP sends (arbitrary bytes, arbitrary JSON objects, JSON objects keyed by
FIX tags with random values, random FIX tag=value strings), ``parse_message`` answers
with a report, a non-execution message or a ``ReportError``, never anything else;
``routing.decide`` always answers a route, an ignore or a DLQ reason; and the dispatcher
on the in-memory bus leaves every message routed, ignored or in the DLQ with a reason.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from execflow.backends.bus import H_REASON, QueueNames
from execflow.backends.memory_bus import InMemoryBus
from execflow.clock import SequentialIds
from execflow.domain.codec import lifecycle_to_dict
from execflow.domain.enums import RequestKind
from execflow.domain.messages import ExecutionReport, NonExecutionMessage
from execflow.domain.models import LifecycleRecord
from execflow.domain.reports import parse_message
from execflow.domain.routing import DeadLetterDecision, DlqReason, Ignore, Route, decide
from execflow.errors import ReportError
from execflow.logs import setup_logging
from execflow.pipeline.dispatcher import dispatcher_consumer
from execflow.pipeline.runner import Runner
from execflow.pipeline.services import open_services
from execflow.settings import Settings

# Tags the normaliser reads, plus a few it does not; values drawn to hit every parser branch.
FIX_TAGS = ["35", "11", "41", "17", "37", "39", "150", "6", "14", "31", "32", "151", "44"]
FIX_TAGS += ["99", "54", "55", "58", "103", "60", "10", "8", "9", "49", "56", "1"]
KNOWN_LIFECYCLES = [f"L{n}" for n in range(len(RequestKind))]
NAMED_KEYS = ["type", "lifecycle_id", "order_id", "clordid", "exec_id", "ord_status", "status"]
NAMED_KEYS += ["avg_px", "cum_qty", "side", "symbol", "reason", "transact_time", "provider"]

interesting_text = st.sampled_from(
    ["8", "0", "2", "F", "1", "A", "5", "4", "C", "FILLED", "BUY", "SELL", "1.10450", "-0",
     "1e999", "NaN", "Infinity", "20261129-12:47:00.123", "2026-11-29T12:47:00Z", "", " ",
     "\x00", "\r\n", "\x1b[31m", "\u2028", "é", "99999999999999999999999999",
     *KNOWN_LIFECYCLES]
)  # fmt: skip
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | interesting_text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)
keys = st.sampled_from(FIX_TAGS + NAMED_KEYS) | st.text(max_size=12)
json_objects = st.dictionaries(keys, json_values, max_size=14)
fix_tag_objects = st.dictionaries(
    st.sampled_from(FIX_TAGS), interesting_text | st.text(max_size=16) | st.integers(), max_size=16
)


@st.composite
def fix_strings(draw: st.DrawFn) -> str:
    """Random tag=value sequences: SOH or ``|`` separated, sometimes with a checksum."""
    pairs = draw(
        st.lists(
            st.tuples(
                st.sampled_from(FIX_TAGS) | st.text(max_size=4),
                interesting_text | st.text(max_size=12),
            ),
            max_size=14,
        )
    )
    separator = draw(st.sampled_from(["\x01", "|"]))
    text = separator.join(f"{tag}={value}" for tag, value in pairs)
    if draw(st.booleans()):
        body = (text + separator).replace(separator, "\x01")
        checksum = sum(body.encode("utf-8")) % 256 + draw(st.sampled_from([0, 0, 1]))
        text = f"{text}{separator}10={checksum:03d}"
    return text


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, default=str).encode("utf-8", "surrogatepass")


any_body = (
    st.binary(max_size=300)
    | json_objects.map(json_bytes)
    | fix_tag_objects.map(json_bytes)
    | fix_strings().map(lambda s: s.encode("utf-8", "surrogatepass"))
)

Outcome = ExecutionReport | NonExecutionMessage | ReportError


def normalised(raw: bytes | str) -> Outcome:
    """``parse_message`` with its only allowed exception turned into a value."""
    try:
        return parse_message(raw)
    except ReportError as exc:
        return exc


def lifecycle_for(outcome: Outcome, kind: RequestKind | None) -> LifecycleRecord | None:
    if kind is None or not isinstance(outcome, ExecutionReport) or outcome.lifecycle_id is None:
        return None
    return LifecycleRecord(outcome.lifecycle_id, "live:6", "o1", kind)


def assert_decided(outcome: Outcome, kind: RequestKind | None) -> None:
    assert isinstance(outcome, ExecutionReport | NonExecutionMessage | ReportError)
    decision = decide(outcome, lifecycle_for(outcome, kind))
    assert isinstance(decision, Route | Ignore | DeadLetterDecision)
    if isinstance(decision, DeadLetterDecision):
        assert isinstance(decision.reason, DlqReason) and decision.reason.value
    if isinstance(outcome, ReportError):
        assert isinstance(decision, DeadLetterDecision)
        assert decision.reason is DlqReason.MALFORMED_REPORT


kinds = st.none() | st.sampled_from(RequestKind)
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(raw=st.binary(max_size=400), kind=kinds)
def test_arbitrary_bytes_are_a_report_a_non_execution_message_or_a_report_error(
    raw: bytes, kind: RequestKind | None
) -> None:
    assert_decided(normalised(raw), kind)


@FUZZ
@given(data=json_objects, kind=kinds)
def test_arbitrary_json_objects_always_get_a_decision_or_a_dlq_reason(
    data: dict[str, Any], kind: RequestKind | None
) -> None:
    raw = json_bytes(data)
    assert_decided(normalised(raw), kind)
    assert_decided(normalised(raw.decode("utf-8", "surrogatepass")), kind)


@FUZZ
@given(data=fix_tag_objects, kind=kinds)
def test_json_keyed_by_fix_tags_with_random_values_never_raises_anything_else(
    data: dict[str, Any], kind: RequestKind | None
) -> None:
    assert_decided(normalised(json_bytes(data)), kind)


@FUZZ
@given(text=fix_strings(), kind=kinds)
def test_random_fix_strings_never_raise_anything_else(text: str, kind: RequestKind | None) -> None:
    assert_decided(normalised(text), kind)
    assert_decided(normalised(text.encode("utf-8", "surrogatepass")), kind)


def test_the_fuzz_strategies_reach_every_outcome() -> None:
    """Guards the fuzzing above: the strategies are not all rejected at the first byte."""
    seen: set[str] = set()
    good = b'{"35":"8","11":"L1","17":"X1","39":"2","14":"1","6":"1.1","55":"EURUSD"}'
    for raw in (good, b'{"35":"0"}', b"\xff", b"8=FIX.4.4|35=8|17=X|39=0|11=L2"):
        seen.add(type(normalised(raw)).__name__)
    assert seen == {"ExecutionReport", "NonExecutionMessage", "ReportError"}


# -- the dispatcher on the in-memory bus --------------------------------------------------------


def _settings(root: Path) -> Settings:
    return Settings(
        log_dir=root / "logs",
        database_url=f"sqlite+aiosqlite:///{root / 'fuzz.db'}",
        retry_max_attempts=2,
        retry_base_delay_s=0.001,
        retry_max_delay_s=0.002,
        retry_jitter=0.0,
        shutdown_timeout_s=2.0,
    )


async def _dispatch_all(bodies: list[bytes], root: Path) -> dict[str, str]:
    """Publish every body to the reports queue; return message id -> where it ended."""
    settings = _settings(root)
    bus = InMemoryBus(QueueNames(settings.queue_prefix), ids=SequentialIds("m"))
    with setup_logging(settings, "dispatcher", bridge=False) as logs:
        async with open_services(settings, logs, ids=SequentialIds("t"), bus=bus) as services:
            for number, kind in enumerate(RequestKind):
                record = LifecycleRecord(f"L{number}", "live:6", f"o{number}", kind)
                await services.state.put_lifecycle(record.lifecycle_id, lifecycle_to_dict(record))
            runner = Runner(services, dispatcher_consumer(services), rand=lambda: 0.5)
            await runner.start()
            for number, body in enumerate(bodies):
                await bus.publish(services.queues.reports, body, message_id=f"fuzz{number}")
            await bus.join(services.queues.reports, timeout_s=30)
            await runner.stop()
            ended: dict[str, str] = {}
            for queue in (*(services.queues.worker(k) for k in _WORKERS), bus.dlq_name):
                while (delivery := await bus.get(queue)) is not None:
                    headers = delivery.message.headers
                    if queue == bus.dlq_name:
                        assert headers.get(H_REASON), headers
                        ended[delivery.message.message_id] = f"dlq:{headers[H_REASON]}"
                    else:
                        # routed copies carry their own id: "<exec_id>:<worker>"
                        ended[f"routed:{delivery.message.message_id}"] = queue
                    await delivery.ack()
            ignored = logs.stats_snapshot()["dispatcher"].get("ignored", 0)
            ended["__ignored__"] = str(ignored)
            return ended


_WORKERS = ("open", "close", "pending", "cancel", "reject", "stoploss", "takeprofit")


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(bodies=st.lists(any_body, min_size=1, max_size=30))
def test_dispatcher_routes_ignores_or_dead_letters_every_random_message(
    bodies: list[bytes],
) -> None:
    with tempfile.TemporaryDirectory() as root:
        ended = asyncio.run(_dispatch_all(bodies, Path(root)))
    ignored = int(ended.pop("__ignored__"))
    routed = [k for k in ended if k.startswith("routed:")]
    dead = {k: v for k, v in ended.items() if not k.startswith("routed:")}
    # every message is accounted for exactly once: routed, ignored, or dead-lettered
    assert len(routed) + ignored + len(dead) == len(bodies), (routed, ignored, dead)
    for number, body in enumerate(bodies):
        outcome = normalised(body)
        if isinstance(outcome, ReportError):
            assert dead[f"fuzz{number}"] == "dlq:malformed_report", body
    for reason in dead.values():
        assert reason.removeprefix("dlq:") in {r.value for r in DlqReason}


def test_dispatcher_fuzz_harness_counts_each_outcome(tmp_path: Path) -> None:
    """The accounting above sees routed, ignored and dead-lettered messages."""
    routed = orjson.dumps(
        {"type": "8", "lifecycle_id": "L0", "exec_id": "X1", "ord_status": "2",
         "cum_qty": "1", "avg_px": "1.1", "symbol": "EURUSD"}
    )  # fmt: skip
    ended = asyncio.run(_dispatch_all([routed, b'{"type":"0"}', b"garbage"], tmp_path))
    assert ended.pop("__ignored__") == "1"
    assert ended == {
        "routed:X1:open": QueueNames(Settings().queue_prefix).worker("open"),
        "fuzz2": "dlq:malformed_report",
    }


def test_atheris_finds_no_crash_in_the_normaliser_and_the_decision(tmp_path: Path) -> None:
    """libFuzzer-guided fuzzing (a dev dependency where atheris has wheels: x86-64 Linux)."""
    pytest.importorskip("atheris")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    seeds = [
        b'\x01{"35":"8","11":"L1","17":"X1","39":"2","14":"1","6":"1.1","55":"EURUSD"}',
        b"\x028=FIX.4.4|35=8|11=L2|17=X2|39=0|54=1|55=EURUSD|10=000",
        b'\x03{"type":"0"}',
    ]
    for number, seed in enumerate(seeds):
        (corpus / f"seed{number}").write_bytes(seed)
    done = subprocess.run(
        [sys.executable, "-m", "tests.faults.atheris_target", "-runs=200000", "-max_len=512",
         str(corpus)],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Done 200000 runs" in done.stderr, done.stderr[-3000:]
