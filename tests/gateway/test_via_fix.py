"""The gateway against the simulator's FIX acceptor: real QuickFIX sessions on 127.0.0.1.

No mock of the engine: the embedded pipeline's requests leave through ``LpGateway`` as
D / F / G, the simulated LP (same book as on the bus) answers with 8s, and quotes reach
the state store only as market data (W / X).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from execflow.apps.demo import DemoOptions, run_demo
from execflow.apps.scenario import ScenarioConfig
from execflow.logtools.record import LogRecord, parse_line
from execflow.settings import Settings
from execflow.sim.config import LpConfig

pytest.importorskip("quickfix")

MESSY_LP = LpConfig(
    reject_rate=0.05,
    partial_rate=0.2,
    duplicate_rate=0.05,
    reorder_rate=0.05,
    malformed_rate=0.02,
    ack_rate=0.3,
)


def records(path: Path) -> list[LogRecord]:
    return [r for line in path.read_text().splitlines() if (r := parse_line(line)) is not None]


def tags(path: Path) -> Counter[str]:
    return Counter(r.tag for r in records(path))


@pytest.mark.slow
async def test_orders_of_every_kind_through_a_fix_session_reconcile_clean(tmp_path: Path) -> None:
    options = DemoOptions(
        run_dir=tmp_path / "run",
        accounts=6,
        scenario=ScenarioConfig(orders=300, settle_timeout_s=60.0),
        lp=MESSY_LP,
        seed=11,
        via_fix=True,
    )
    outcome = await run_demo(Settings(), options)
    sent = outcome.scenario.accepted

    assert outcome.reconciliation.ok, outcome.reconciliation.differences[:5]
    assert outcome.scenario.settled, outcome.scenario.unsettled[:5]
    gateway_lines = records(outcome.log_dir / "lp_gateway.log")
    kinds = Counter(str(r.fields["kind"]) for r in gateway_lines if r.tag == "LPGW:SUCCESS")
    # every kind of request crossed the session: D (market, limit, stop, SL, TP), F, G
    assert set(kinds) >= {
        "OPEN",
        "CLOSE",
        "PLACE_PENDING",
        "CANCEL_PENDING",
        "PLACE_SL",
        "PLACE_TP",
        "CANCEL_SL",
        "CANCEL_TP",
    }, kinds
    assert kinds["MODIFY_PENDING"] == sent["modify"]
    received = Counter(
        str(r.fields["msg_type"]) for r in gateway_lines if r.tag == "LPGW:REPORT_RECEIVED"
    )
    # refused cancels come back as OrderCancelReject (9): mapped to the reject worker
    assert received["9"] > 0, received

    gateway = tags(outcome.log_dir / "lp_gateway.log")
    simulator = tags(outcome.log_dir / "simulator.log")
    assert gateway["LPGW:LOGON"] == 1
    assert gateway["LPGW:SUCCESS"] > 300
    # every request reached the LP once: none was answered as a re-sent ClOrdID
    answered = sum(n for tag, n in simulator.items() if tag.partition(":")[2] in _ANSWERS)
    assert answered == gateway["LPGW:SUCCESS"]
    assert simulator["SIM:DUPLICATE_REQUEST"] == 0
    # every report the LP sent was published to the pipeline, duplicates and noise included
    wire = (
        simulator["SIM:REPORT_SENT"]
        + simulator["SIM:DUPLICATE_SENT"]
        + simulator["SIM:MALFORMED_SENT"]
    )
    assert gateway["LPGW:REPORT_RECEIVED"] == wire
    assert outcome.dlq_reasons["malformed_report"] == simulator["SIM:MALFORMED_SENT"] > 0
    assert outcome.stats["lp_gateway"]["quotes_written"] > 0


_ANSWERS = {"FILLED", "ACCEPTED", "REJECTED", "CANCELLED", "MODIFIED"}
