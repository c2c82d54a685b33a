"""``logs stats`` counts what the components reported in their own STATS lines."""

from __future__ import annotations

from pathlib import Path

from execflow.logtools.files import discover, iter_lines
from execflow.logtools.record import LogRecord, parse_line
from execflow.logtools.stats import collect_stats, percentile
from execflow.logtools.timeutil import shift_ts
from tests.logtools.pipeline_logs import Written

COUNTERS = ("processed", "success", "failure", "skipped", "parked", "dead_lettered")


def stats_lines(directory: Path) -> list[LogRecord]:
    """Every STATS line, in time order."""
    found = []
    for log_file in discover(directory):
        for line in iter_lines(log_file):
            record = parse_line(line, log_file.name)
            if record is not None and record.tag == "STATS":
                found.append(record)
    return sorted(found, key=lambda r: r.ts)


def _int(record: LogRecord, key: str) -> int:
    return int(record.get(key) or 0)


def test_totals_match_the_final_stats_lines(logs: Written) -> None:
    report = collect_stats(logs.directory)
    finals: dict[str, dict[str, int]] = {}
    for record in stats_lines(logs.directory):
        if record.get("final") != "true":
            continue
        component = str(record.get("component"))
        totals = finals.setdefault(component, dict.fromkeys(COUNTERS, 0))
        for key in COUNTERS:
            totals[key] += _int(record, key)
        for key, value in record.fields.items():
            if key.startswith("dlq."):
                totals[key] = totals.get(key, 0) + int(value)
    assert set(finals) == {"dispatcher", "worker_open", "worker_close"}
    for component, totals in finals.items():
        counted = report.components[component]
        assert {k: getattr(counted, k) for k in COUNTERS} == {k: totals[k] for k in COUNTERS}
        reasons = {k[4:]: v for k, v in totals.items() if k.startswith("dlq.")}
        assert dict(counted.dlq_reasons) == reasons
    assert report.components["worker_open"].failure > 0
    assert report.components["worker_open"].parked > 0


def test_a_period_between_two_stats_lines_matches_their_difference(text_logs: Written) -> None:
    lines = [r for r in stats_lines(text_logs.directory) if r.get("component") == "worker_open"]
    assert len(lines) >= 3
    start, end = lines[0], lines[-2]
    # (start, end]: lines after the first STATS line, up to the later one.
    since = shift_ts(start.ts, 1e-6)
    report = collect_stats(
        text_logs.directory, since=since, until=end.ts, components={"worker_open"}
    )
    counted = report.components["worker_open"]
    for key in COUNTERS:
        assert getattr(counted, key) == _int(end, key) - _int(start, key), key
    assert set(report.components) == {"worker_open"}


def test_latency_and_rates(text_logs: Written) -> None:
    stats = collect_stats(text_logs.directory).components["worker_open"]
    summary = stats.to_json()
    assert summary["max_ms"] == max(stats.times_ms)
    assert summary["p50_ms"] is not None and summary["p50_ms"] <= summary["p99_ms"]
    assert 0 < summary["success_rate"] < 1
    assert summary["error_rate"] == stats.failure / stats.processed
    assert summary["throughput_per_min"] > 0
    assert summary["dlq_by_reason"] == {"precondition_timeout": stats.dead_lettered}


def test_percentile_nearest_rank() -> None:
    from collections import Counter

    counts = Counter({1.0: 50, 2.0: 45, 10.0: 5})
    assert percentile(counts, 50) == 1.0
    assert percentile(counts, 95) == 2.0
    assert percentile(counts, 99) == 10.0
    assert percentile(Counter(), 50) is None
