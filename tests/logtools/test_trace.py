"""``logs trace`` on logs written by the real writer (rotated, gzipped, text and JSON)."""

from __future__ import annotations

from execflow.logtools.trace import trace_order
from tests.logtools.pipeline_logs import Written


def test_trace_finds_every_line_of_an_order_in_time_order(logs: Written) -> None:
    # An order early in the run: its lines are in gzipped backups by now.
    order_id = logs.orders[2]
    result = trace_order(logs.directory, order_id)
    tags = [r.tag for r in result.records]
    assert result.trace_ids == sorted(logs.trace_ids[order_id])
    # Both reports' RECEIVED lines carry only the trace id: found through pass 2.
    assert tags.count("DISPATCH:RECEIVED") == 2
    assert tags.count("DISPATCH:ROUTED") == 2
    assert "OPEN:PROCESSING" in tags and "CLOSE:PROCESSING" in tags
    assert any(t.startswith("ORDER_") and t.endswith("_CALC") for t in tags)
    assert [r.ts for r in result.records] == sorted(r.ts for r in result.records)
    assert any(r.file.endswith(".gz") for r in result.records)
    for record in result.records:
        assert record.get("order_id") in (order_id, None)
        assert record.get("trace_id") in logs.trace_ids[order_id]


def test_trace_does_not_match_prefixes_of_other_ids(text_logs: Written) -> None:
    # "100" is a prefix of order ids 1000..1099 but no order of its own.
    assert trace_order(text_logs.directory, "100").records == []


def test_error_copy_in_provider_errors_is_shown_once(text_logs: Written) -> None:
    # i % 17 == 6 fails in the open worker: order index 6.
    order_id = text_logs.orders[6]
    records = trace_order(text_logs.directory, order_id).records
    errors = [r for r in records if r.tag == "OPEN:ERROR"]
    assert len(errors) == 1
    assert errors[0].get("error_type") == "KeyError"
