"""``logs errors``: grouped by type and component, one example traceback each."""

from __future__ import annotations

from execflow.logtools.error_groups import collect_errors, error_records
from tests.logtools.pipeline_logs import Written


def test_errors_grouped_with_counts_and_traceback(logs: Written) -> None:
    groups = collect_errors(logs.directory)
    assert {(g.error_type, g.component) for g in groups} == {
        ("KeyError", "worker_open"),
        ("KeyError", "worker_close"),
    }
    # Each error is in its component file and in provider_errors.log: counted once.
    assert sum(g.count for g in groups) == logs.failures
    for group in groups:
        assert group.first_ts <= group.last_ts
        traceback = group.example.get("traceback")
        assert traceback is not None
        assert "Traceback (most recent call last)" in traceback
        assert "\n" in traceback  # unescaped
        assert group.to_json()["example"]["traceback"] == traceback


def test_errors_filtered_by_component_and_time(text_logs: Written) -> None:
    everything = error_records(text_logs.directory)
    assert len(everything) == text_logs.failures
    only_open = collect_errors(text_logs.directory, components={"worker_open"})
    assert [g.component for g in only_open] == ["worker_open"]
    late = collect_errors(text_logs.directory, since=everything[-1].ts)
    assert sum(g.count for g in late) == 1
