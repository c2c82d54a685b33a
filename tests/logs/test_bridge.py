"""Stdlib records go through the same writer; every error reaches provider_errors.log once."""

from __future__ import annotations

import logging
from pathlib import Path

from execflow.logs import log_context
from execflow.logs.bridge import BridgeHandler

from .conftest import SystemFactory, split_lines


def _root_bridges() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if isinstance(h, BridgeHandler)]


def test_library_records_land_in_the_component_file(
    make_system: SystemFactory, log_dir: Path
) -> None:
    system = make_system("db_writer")
    logging.getLogger("asyncpg.pool").warning("pool at %d%% for %s", 90, "postgresql://u:pw@db/x")
    logging.getLogger("aio_pika").debug("not at INFO")
    system.flush()
    (line,) = split_lines((log_dir / "db_writer.log").read_bytes())
    assert " WARNING asyncpg.pool [LOG] msg=" in line
    assert "pool at 90% for postgresql://u:***@db/x" in line
    assert (log_dir / "provider_errors.log").read_bytes() == b""


def test_error_record_copied_once_with_traceback_and_context(
    make_system: SystemFactory, log_dir: Path
) -> None:
    system = make_system("worker_close")
    with log_context(trace_id="abc"):
        try:
            raise KeyError("missing")
        except KeyError:
            logging.getLogger("redis").exception("lost connection")
    system.flush()
    own = split_lines((log_dir / "worker_close.log").read_bytes())
    errors = split_lines((log_dir / "provider_errors.log").read_bytes())
    assert len(own) == 1 and len(errors) == 1
    assert errors[0] == own[0]
    assert ' ERROR redis [LOG] msg="lost connection"' in errors[0]
    assert "error_type=KeyError" in errors[0]
    assert 'traceback="Traceback' in errors[0]
    assert "trace_id=abc" in errors[0]


def test_event_api_error_is_written_once_per_file(
    make_system: SystemFactory, log_dir: Path
) -> None:
    system = make_system("worker_open")
    try:
        raise RuntimeError("db down")
    except RuntimeError as exc:
        system.events.error("OPEN:ERROR", exc=exc, order_id="3163458366000")
    system.events.event(logging.CRITICAL, "OPEN:FATAL", reason="x")
    system.flush()
    own = [x for x in split_lines((log_dir / "worker_open.log").read_bytes()) if "STATS" not in x]
    errors = split_lines((log_dir / "provider_errors.log").read_bytes())
    assert len(own) == 2 and len(errors) == 2
    assert "[OPEN:ERROR] order_id=3163458366000 error_type=RuntimeError" in errors[0]
    assert "traceback=" in errors[0]
    assert " CRITICAL provider.worker.open [OPEN:FATAL]" in errors[1]


def test_close_removes_the_bridge_and_restores_the_root(make_system: SystemFactory) -> None:
    root = logging.getLogger()
    level_before = root.level
    first = make_system("dispatcher")
    second = make_system("dispatcher")
    assert len(_root_bridges()) == 1, "a new setup replaces the old bridge"
    second.close()
    first.close()
    assert _root_bridges() == []
    assert root.level == level_before
