"""``execflow run lp-gateway`` and ``execflow simulate --fix-port`` as separate processes.

The gateway logs on with its password (never written anywhere), logs to its per-LP file
with ``PROCESS:START`` / ``STATS`` / ``PROCESS:STOP``, and a refused logon is one clear
ERROR line per attempt, retried with a growing delay.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

from execflow.logtools.record import LogRecord, parse_line
from execflow.sim.viafix import free_port
from tests.gateway.conftest import wait_for

pytest.importorskip("quickfix")

EXECFLOW = str(Path(sys.executable).with_name("execflow"))
SECRET = "s3cret-Pw-9f1"


def env(tmp_path: Path, port: int, password: str) -> dict[str, str]:
    lps = {
        "primebank": {
            "port": port,
            "sender_comp_id": "EXECFLOW",
            "target_comp_id": "SIMLP",
            "password": password,
            "username": "broker1",
            "store_dir": str(tmp_path / "fix"),
            "symbols": ["EURUSD", "GBPUSD"],
            "reconnect_min_s": 1,
            "reconnect_max_s": 4,
        }
    }
    out = dict(os.environ)
    out.update(
        EXECFLOW_LOG_DIR=str(tmp_path / "logs"),
        EXECFLOW_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'execflow.db'}",
        EXECFLOW_LPS=json.dumps(lps),
        EXECFLOW_STATS_INTERVAL_S="1",
    )
    return out


def records(path: Path) -> list[LogRecord]:
    if not path.exists():
        return []
    return [r for line in path.read_text().splitlines() if (r := parse_line(line)) is not None]


async def until(path: Path, tag: str, count: int = 1, timeout_s: float = 30.0) -> None:
    await wait_for(lambda: sum(r.tag == tag for r in records(path)) >= count, timeout_s)


async def spawn(args: list[str], environ: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        EXECFLOW,
        *args,
        env=environ,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def stop(process: asyncio.subprocess.Process) -> tuple[int, str]:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode or 0, (out + err).decode()


@pytest.mark.slow
async def test_gateway_process_logs_on_with_a_masked_password_and_stops_cleanly(
    tmp_path: Path,
) -> None:
    port = free_port()
    environ = env(tmp_path, port, SECRET)
    lp = await spawn(["simulate", "--fix-port", str(port), "--fix-password", SECRET], environ)
    gateway_log = tmp_path / "logs" / "lp_gateway-primebank.log"
    try:
        await until(tmp_path / "logs" / "simulator.log", "SIM:FIX_LISTENING")
        gateway = await spawn(["run", "lp-gateway", "--lp", "primebank"], environ)
        await until(gateway_log, "LPGW:LOGON")
        await until(gateway_log, "LPGW:MARKET_DATA_REQUESTED")
        code, output = await stop(gateway)
    finally:
        lp_code, lp_output = await stop(lp)
    assert code == 0, output
    assert lp_code == 0, lp_output
    tags = [r.tag for r in records(gateway_log)]
    assert tags[0] == "PROCESS:START"
    assert tags[-2:] == ["PROCESS:STOP", "STATS"]  # the final STATS line comes at close
    start = records(gateway_log)[0]
    assert start.fields["lp"] == "primebank"
    # the password reached the LP (its logon check passed) and no file, line or output
    written = [p.read_text(errors="replace") for p in (tmp_path / "logs").iterdir()]
    assert not [text for text in [*written, output, lp_output] if SECRET in text]
    assert "**" in str(start.fields.get("lps"))


@pytest.mark.slow
async def test_a_refused_logon_is_one_error_line_per_attempt_with_backoff(
    tmp_path: Path,
) -> None:
    port = free_port()
    lp = await spawn(
        ["simulate", "--fix-port", str(port), "--fix-password", "the-right-one"],
        env(tmp_path, port, SECRET),
    )
    gateway_log = tmp_path / "logs" / "lp_gateway-primebank.log"
    try:
        await until(tmp_path / "logs" / "simulator.log", "SIM:FIX_LISTENING")
        environ = env(tmp_path, port, SECRET)
        gateway = await spawn(["run", "lp-gateway", "--lp", "primebank"], environ)
        await until(gateway_log, "LPGW:LOGON_REJECTED", count=3, timeout_s=40)
        code, output = await stop(gateway)
    finally:
        await stop(lp)
    assert code == 0, output
    lines = records(gateway_log)
    rejected = [r for r in lines if r.tag == "LPGW:LOGON_REJECTED"]
    assert rejected[0].level == "ERROR"
    assert str(rejected[0].fields["text"]).endswith("invalid username or password")
    assert rejected[0].fields["port"] == str(port)
    backoff = [float(str(r.fields["delay_s"])) for r in lines if r.tag == "LPGW:RECONNECT_BACKOFF"]
    assert backoff[:2] == [2.0, 4.0], backoff
    assert "LPGW:LOGON" not in [r.tag for r in lines]
    errors = records(tmp_path / "logs" / "provider_errors.log")
    assert [r.tag for r in errors if r.tag == "LPGW:LOGON_REJECTED"]
    assert "Traceback" not in output


@pytest.mark.slow
async def test_a_store_directory_lost_under_the_session_stops_the_gateway(
    tmp_path: Path,
) -> None:
    # no LP listens: the session keeps reconnecting, as while an LP is down
    environ = env(tmp_path, free_port(), SECRET)
    gateway_log = tmp_path / "logs" / "lp_gateway-primebank.log"
    gateway = await spawn(["run", "lp-gateway", "--lp", "primebank"], environ)
    try:
        await until(gateway_log, "LPGW:STARTING")
        shutil.rmtree(tmp_path / "fix")
        out, err = await asyncio.wait_for(gateway.communicate(), timeout=60)
    finally:
        if gateway.returncode is None:
            gateway.kill()
            await gateway.wait()
    # it stopped on its own, with the reason, instead of spinning on a store it cannot open
    assert gateway.returncode == 2, (out + err).decode()
    assert "store directory" in err.decode() and "went away" in err.decode()
    [lost] = [r for r in records(gateway_log) if r.tag == "LPGW:STORE_LOST"]
    assert lost.level == "CRITICAL"
    assert (lost.fields["store_dir"], lost.fields["reason"]) == (
        str(tmp_path / "fix" / "primebank"),
        "the directory is gone",
    )
    errors = records(tmp_path / "logs" / "provider_errors.log")
    assert "LPGW:STORE_LOST" in [r.tag for r in errors]
