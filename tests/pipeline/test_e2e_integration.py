"""The end-to-end scenarios against RabbitMQ + Redis + PostgreSQL (marker ``integration``).

Other engineers test on the same servers: each test gets its own queue prefix, Redis key
prefix and PostgreSQL database, all removed at the end (``real_services`` in conftest).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from execflow.domain.enums import OrderStatus, ReportStatus, RequestKind
from execflow.pipeline.audit import verify_chains
from execflow.pipeline.embedded import EmbeddedPipeline
from execflow.pipeline.services import Services
from tests.pipeline.conftest import LogReader
from tests.pipeline.e2e_cells import CELL_IDS, CELLS, answer, check_logs, check_state_and_db
from tests.pipeline.flow import ASK, BID, QTY, SEED_FILE, Flow

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("kind", "status"), CELLS, ids=CELL_IDS)
async def test_cell_end_to_end_on_real_servers(
    real_services: Services, read_logs: LogReader, kind: RequestKind, status: ReportStatus
) -> None:
    async with Flow.running(real_services) as flow:
        setup = await flow.setup(kind)
        before = await flow.event_kinds(setup.order_id)
        exec_id = await answer(flow, setup, status)
        await check_state_and_db(flow, setup, kind, status, before)
    check_logs(read_logs, setup, kind, status, exec_id)


async def test_duplicates_two_instances_and_rebuild_on_real_servers(
    real_services: Services, read_logs: LogReader
) -> None:
    services = real_services
    async with Flow.running(services) as flow:
        second = EmbeddedPipeline(services, rebuild=False)  # every consumer twice
        await second.start()
        try:
            setups = [await flow.open_request(sl="1.08000") for _ in range(4)]
            for setup in setups:
                for _ in range(2):
                    await flow.report(
                        setup.lifecycle_id, "EXECUTED", qty=QTY, px=ASK,
                        exec_id=f"F-{setup.order_id}", settle=False,
                    )  # fmt: skip
            await flow.settle()
            await second.drain()
            await flow.settle()
        finally:
            await second.stop()
        account = await flow.account()
        assert sorted(p.order_id for p in account.positions) == sorted(s.order_id for s in setups)
        for setup in setups:
            assert (await flow.event_kinds(setup.order_id)).count("ORDER_OPENED") == 1
        target = setups[0]
        sl = flow.request(RequestKind.PLACE_SL, target.order_id)
    # the state store loses everything; the next start rebuilds it from PostgreSQL
    await services.state.flush_all()
    services = replace(
        services, settings=services.settings.model_copy(update={"seed_file": SEED_FILE})
    )
    pipeline = EmbeddedPipeline(services)
    await pipeline.start()
    try:
        assert pipeline.rebuilt is not None and pipeline.rebuilt.orders == 4
        flow = Flow(services, pipeline, first_exec_id=500)
        await flow.report(sl["lifecycle_id"], "EXECUTED", qty=QTY, px=BID)
        order = await flow.order(target.order_id)
        assert order.status is OrderStatus.CLOSED and order.sl.lifecycle_id == sl["lifecycle_id"]
    finally:
        await pipeline.stop()
    assert read_logs.find("supervisor", "STATE:REBUILT")
    assert len(read_logs.find("worker_open", "OPEN:SKIP:DUPLICATE")) == 4
    # two db writers shared db_updates, redeliveries included: one audit chain per account
    audit = await verify_chains(services.database)
    assert audit.ok and audit.events == await services.database.count_events() > 0
