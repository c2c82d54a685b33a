"""Reading the provider logs: trace an order, statistics, errors, tail, HTML report.

Works on the files only (current, rotated ``name.log.N`` and gzipped ``name.log.N.gz``,
text or JSON lines, per docs/log-format.md), streaming them in blocks.
"""

from execflow.logtools.error_groups import ErrorGroup, collect_errors, error_records
from execflow.logtools.files import LogFile, discover, iter_blocks, iter_lines
from execflow.logtools.record import LogRecord, parse_line
from execflow.logtools.stats import PeriodStats, StatsReport, collect_stats
from execflow.logtools.trace import TraceResult, trace_order

__all__ = [
    "ErrorGroup",
    "LogFile",
    "LogRecord",
    "PeriodStats",
    "StatsReport",
    "TraceResult",
    "collect_errors",
    "collect_stats",
    "discover",
    "error_records",
    "iter_blocks",
    "iter_lines",
    "parse_line",
    "trace_order",
]
