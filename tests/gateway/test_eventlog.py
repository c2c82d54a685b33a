"""The engine's C++ session log: events reach the sink, messages are written nowhere."""

from __future__ import annotations

import asyncio
import stat
import tempfile
import threading
from pathlib import Path

import pytest
import quickfix as fix

from execflow.clock import UuidIds
from execflow.gateway.eventlog import NativeLogFactory, event_text
from execflow.gateway.service import LpGateway
from execflow.pipeline.services import Services
from execflow.settings import LpSession, Settings
from execflow.sim.config import LatencyModel, LpConfig
from execflow.sim.fixlp import FixLpSession, FixSimulator
from execflow.sim.viafix import free_port
from tests.gateway.conftest import wait_for
from tests.gateway.test_processes import records

LOGON = "8=FIX.4.4\x019=30\x0135=A\x01553=user\x01554=s3cret-pw\x0110=000\x01"


def test_event_text_drops_the_engines_timestamp_only() -> None:
    assert event_text("20261206-16:40:00.123456789 : Connection failed") == "Connection failed"
    assert event_text("Initiated logon request") == "Initiated logon request"
    assert event_text("Message 3 Rejected : Invalid tag") == "Message 3 Rejected : Invalid tag"


def test_events_reach_the_sink_in_order_and_messages_are_not_written(tmp_path: Path) -> None:
    events: list[tuple[str, str]] = []
    factory = NativeLogFactory(
        lambda text: events.append((threading.current_thread().name, text)), tmp_path / "log"
    )
    factory.open()
    session_log = factory.create(fix.SessionID("FIX.4.4", "GW", "LP"))
    global_log = factory.create()
    session_log.onIncoming(LOGON)
    session_log.onOutgoing(LOGON)
    session_log.onEvent("Connection failed")
    global_log.onEvent("global event")
    session_log.onEvent("Received logon")
    factory.destroy(session_log)
    factory.destroy(global_log)
    factory.close()
    assert [text for _, text in events] == ["Connection failed", "global event", "Received logon"]
    assert {name for name, _ in events} == {"fix-engine-events"}  # never the caller's thread
    log_dir = tmp_path / "log"
    assert (log_dir / "FIX.4.4-GW-LP.messages.current.log").resolve() == Path("/dev/null")
    for path in log_dir.iterdir():
        if path.is_file() and not path.is_symlink():
            assert b"s3cret-pw" not in path.read_bytes(), path
    assert not (log_dir / "engine-events.pipe").exists()  # removed by close


def test_a_failing_sink_does_not_stop_the_reader(tmp_path: Path) -> None:
    seen: list[str] = []

    def sink(text: str) -> None:
        seen.append(text)
        if text == "first":
            raise RuntimeError("log backend down")

    factory = NativeLogFactory(sink, tmp_path)
    factory.open()
    log = factory.create(fix.SessionID("FIX.4.4", "GW", "LP"))
    log.onEvent("first")
    log.onEvent("second")
    factory.close()
    assert seen == ["first", "second"]
    factory.close()  # closing twice is harmless


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The gateway tests' settings, debug lines kept: the simulator's engine events are."""
    return settings.model_copy(update={"log_level": "DEBUG"})


async def test_the_simulators_acceptor_logs_in_cpp_events_as_its_lines(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a real LP's native engine: no Python log per message, its events still logged."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # where the acceptor's log goes
    port = free_port()
    lp = FixSimulator(
        services.logger("simulator"),
        LpConfig(latency=LatencyModel(0, 0, 0)),
        FixLpSession(port=port),
        services.clock,
        UuidIds(),
    )
    gateway = LpGateway(
        services,
        "sim",
        LpSession(
            port=port, sender_comp_id="EXECFLOW", target_comp_id="SIMLP", store_dir=tmp_path / "fix"
        ),
    )
    await lp.start()
    try:
        (log_dir,) = temp.iterdir()
        assert stat.S_ISFIFO((log_dir / "engine-events.pipe").stat().st_mode)
        messages = log_dir / "FIX.4.4-SIMLP-EXECFLOW.messages.current.log"
        await gateway.start()
        await wait_for(lp.lp.logged_on.is_set, timeout_s=15)
        assert messages.resolve() == Path("/dev/null")  # the session's log is a C++ FileLog
    finally:
        await gateway.stop()
        await lp.stop()
    assert list(temp.iterdir()) == []  # removed at the stop
    await asyncio.to_thread(services.logs.flush)
    lines = records(services.settings.log_dir / "simulator.log")
    events = [str(r.fields.get("text")) for r in lines if r.tag == "SIM:FIX_EVENT"]
    assert {"Received logon request", "Responding to logon request"} <= set(events), events
    assert not any(text[:8].isdigit() for text in events)  # the engine's stamp is dropped
