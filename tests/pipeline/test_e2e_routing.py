"""End to end, embedded: every non-DLQ cell of the routing table, intake to DB and log files."""

from __future__ import annotations

import pytest

from execflow.domain.enums import ReportStatus, RequestKind
from execflow.domain.routing import ROUTING_TABLE, DeadLetterDecision
from execflow.pipeline.services import Services
from tests.pipeline.conftest import LogReader
from tests.pipeline.e2e_cells import (
    CELL_IDS,
    CELLS,
    EXPECTED,
    answer,
    check_logs,
    check_state_and_db,
)
from tests.pipeline.flow import Flow


def test_every_non_dlq_cell_has_a_scenario() -> None:
    non_dlq = {c for c, d in ROUTING_TABLE.items() if not isinstance(d, DeadLetterDecision)}
    assert set(CELLS) == non_dlq == set(EXPECTED)
    assert len(CELLS) == 49


@pytest.mark.parametrize(("kind", "status"), CELLS, ids=CELL_IDS)
async def test_cell_end_to_end(
    services: Services, read_logs: LogReader, kind: RequestKind, status: ReportStatus
) -> None:
    async with Flow.running(services) as flow:
        setup = await flow.setup(kind)
        assert setup.kind is kind
        before = await flow.event_kinds(setup.order_id)
        exec_id = await answer(flow, setup, status)
        await check_state_and_db(flow, setup, kind, status, before)
    check_logs(read_logs, setup, kind, status, exec_id)
