"""The Prometheus metrics of one execflow process (see the package docstring for the API)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector

from execflow.errors import ConfigError
from execflow.metrics.processes import ProcessesCollector
from execflow.settings import PROMETHEUS_MULTIPROC_DIR, prometheus_multiproc_dir

__all__ = [
    "LATENCY_BUCKETS_S",
    "OUTCOMES",
    "HealthCheck",
    "LogSnapshot",
    "Metrics",
    "ReplicationSnapshot",
]

# 0.5 ms .. 30 s: a worker transition takes milliseconds; a parked report seconds.
SLIPPAGE_BUCKETS_PIPS = (
    -20.0,
    -10.0,
    -5.0,
    -2.0,
    -1.0,
    -0.5,
    -0.1,
    0.0,
    0.1,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
    20.0,
)
SLIPPAGE_BUCKETS_USD = (
    -1000.0, -100.0, -25.0, -5.0, -1.0, -0.1, 0.0, 0.1, 1.0, 5.0, 25.0, 100.0, 1000.0,
)  # fmt: skip
LATENCY_BUCKETS_S = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
OUTCOMES = ("success", "failure", "skipped", "parked", "dead_lettered")

# A health check returns None when healthy, else a short reason.
HealthCheck = Callable[[], str | None]


@dataclass(frozen=True, slots=True)
class LogSnapshot:
    """Cumulative counters of the logging layer (since the process started)."""

    lines_by_file: Mapping[str, int] = field(default_factory=dict)
    write_failures: int = 0
    dropped: int = 0


@dataclass(frozen=True, slots=True)
class ReplicationSnapshot:
    """What a replicated state store (Redis Cluster) saw of its replicas, since it was made."""

    under_replicated_writes: int = 0
    replicas_by_node: Mapping[str, int] = field(default_factory=dict)


class Metrics:
    """Counters, histograms and gauges of one process, in their own registry.

    ``run all`` (several processes, one scrape endpoint) uses prometheus_client's
    multiprocess mode. Each child, with ``multiprocess_dir``, writes its values to files
    in that directory and ``registry`` aggregates every process. prometheus_client finds
    the directory only in the environment (``PROMETHEUS_MULTIPROC_DIR``), which execflow
    never writes: the supervisor sets it for its children (``child_environment``), and a
    process whose environment names another directory, or none, is refused with a
    ``ConfigError``. The supervisor, with ``aggregate_dir``, serves the aggregate of the
    directory and the ``process_*`` it watches (``watch_processes``); its own counters
    and gauges (its process has no such environment) are not in it.
    """

    def __init__(
        self,
        component: str,
        *,
        multiprocess_dir: Path | None = None,
        aggregate_dir: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.component = component
        self.clock = clock
        self.started_at = clock()
        self.multiprocess = multiprocess_dir is not None or aggregate_dir is not None
        self._health_checks: dict[str, HealthCheck] = {}
        self._log_snapshot: Callable[[], LogSnapshot] | None = None
        self._log_seen = LogSnapshot()
        self._replication_snapshot: Callable[[], ReplicationSnapshot] | None = None
        self._replication_seen = ReplicationSnapshot()
        self._last_report_at: float | None = None
        self._own_process: ProcessCollector | None = None
        own = self._own = CollectorRegistry(auto_describe=True)
        if multiprocess_dir is not None and aggregate_dir is not None:
            raise ValueError("a process records its metrics or aggregates them, not both")
        if multiprocess_dir is not None:
            _require_multiprocess_environment(multiprocess_dir)
            if not getattr(values.ValueClass, "_multiprocess", False):
                # prometheus_client chose its value class at import, from the same
                # environment variable: only an import before the variable was set
                # (a test) gets here.
                values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
        directory = multiprocess_dir or aggregate_dir
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            self.registry = CollectorRegistry()
            MultiProcessCollector(self.registry, path=str(directory))  # type: ignore[no-untyped-call]
        else:
            self.registry = own
            # one process, one endpoint: its own process_* and python_info; in multiprocess
            # mode the supervisor exports its children's instead (``watch_processes``)
            self._own_process = ProcessCollector(registry=own)
            PlatformCollector(registry=own)
        self._declare_pipeline(own)
        self._declare_lp(own)
        self._declare_operations(own)
        self._declare_logs_and_api(own)
        if not self.multiprocess:
            Gauge(
                "execflow_last_report_age_seconds",
                "Seconds since the last execution report (-1 before the first).",
                registry=own,
            ).set_function(self.last_report_age_s)
        self.component_up.labels(component).set(1)

    def _declare_pipeline(self, r: CollectorRegistry) -> None:
        """What the dispatcher and the workers count: reports, outcomes, times, DLQ."""
        self.reports_received = Counter(
            "execflow_reports_received",
            "Execution reports taken from the reports queue.",
            registry=r,
        )
        self.reports_routed = Counter(
            "execflow_reports_routed", "Reports routed to a worker queue.", ["queue"], registry=r
        )
        self.reports_ignored = Counter(
            "execflow_reports_ignored", "Non-execution messages counted and ignored.", registry=r
        )
        self.dlq = Counter(
            "execflow_dlq", "Messages dead-lettered, by reason.", ["reason"], registry=r
        )
        self.worker_outcomes = Counter(
            "execflow_worker_outcomes",
            "Reports handled by a worker (component worker_open...), by outcome.",
            ["component", "outcome"],
            registry=r,
        )
        self.processing_seconds = Histogram(
            "execflow_processing_seconds",
            "Time to handle one message, per component.",
            ["component"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.parked_total = Counter(
            "execflow_parked", "Reports parked (arrived too early).", ["component"], registry=r
        )
        self.retries = Counter(
            "execflow_retries", "Failed attempts retried.", ["component"], registry=r
        )

    def _declare_lp(self, r: CollectorRegistry) -> None:
        """The LP side: latency, session, execution quality (label ``lp`` only, never an id)."""
        self.lp_latency_seconds = Histogram(
            "execflow_lp_latency_seconds",
            "From a request sent to the LP to its execution report received.",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.lp_session_up = Gauge(
            "execflow_lp_session_up",
            "1 while the LP gateway's FIX session is logged on.",
            ["lp"],
            multiprocess_mode="max",
            registry=r,
        )
        # per-LP execution quality (the gateway): label ``lp`` only, never an id
        self.lp_first_report_seconds = Histogram(
            "execflow_lp_first_report_seconds",
            "From a request sent to the LP to its first report, per LP.",
            ["lp"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.lp_fill_seconds = Histogram(
            "execflow_lp_fill_seconds",
            "From a request sent to the LP to its first fill, per LP.",
            ["lp"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.lp_slippage_pips = Histogram(
            "execflow_lp_slippage_pips",
            "Fill price against the quote (market) or the requested level, in pips; "
            "positive is in the client's favour.",
            ["lp"],
            buckets=SLIPPAGE_BUCKETS_PIPS,
            registry=r,
        )
        self.lp_slippage_usd = Histogram(
            "execflow_lp_slippage_usd",
            "Slippage of a filled order in USD (price difference x lots x contract size); "
            "positive is in the client's favour.",
            ["lp"],
            buckets=SLIPPAGE_BUCKETS_USD,
            registry=r,
        )
        self.lp_rejects = Counter(
            "execflow_lp_rejects",
            "Requests the LP refused, by reason.",
            ["lp", "reason"],
            registry=r,
        )
        self.lp_lots_requested = Counter(
            "execflow_lp_lots_requested",
            "Lots sent to the LP in market orders (open, close).",
            ["lp"],
            registry=r,
        )
        self.lp_lots_filled = Counter(
            "execflow_lp_lots_filled",
            "Lots the LP filled of market orders (fill ratio: / requested).",
            ["lp"],
            registry=r,
        )

    def _declare_operations(self, r: CollectorRegistry) -> None:
        """What ops watch: queues, components up, stuck orders, unsent actions, reconciliation."""
        # sampled from the broker by one process (the dispatcher's QueueSampler); a dead
        # sampler's last values must not linger, hence the live modes
        self.queue_depth = Gauge(
            "execflow_queue_depth",
            "Messages ready in a queue, as the broker counts them.",
            ["queue"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.queue_consumers = Gauge(
            "execflow_queue_consumers",
            "Consumers attached to a queue, as the broker counts them.",
            ["queue"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.component_up = Gauge(
            "execflow_component_up",
            "1 while the component runs.",
            ["component"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.last_report_timestamp = Gauge(
            "execflow_last_report_timestamp_seconds",
            "Unix time of the last execution report received.",
            multiprocess_mode="max",
            registry=r,
        )
        self.stuck_orders = Gauge(
            "execflow_stuck_orders",
            "Orders waiting for the LP's answer with no activity for stuck_after_s.",
            # one process counts (the dispatcher); a dead one's last count must not linger
            multiprocess_mode="livemax",
            registry=r,
        )
        self.intake_unsent = Gauge(
            "execflow_intake_unsent",
            "Committed intake actions whose LP request is not sent yet (kept in the intake "
            "process's memory and re-sent with backoff).",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.reconcile_last_success = Gauge(
            "execflow_reconcile_last_success_timestamp_seconds",
            "Unix time the last reconciliation ran to the end (clean or not).",
            multiprocess_mode="max",
            registry=r,
        )
        self.reconcile_mismatches = Gauge(
            "execflow_reconcile_mismatches",
            "Differences between the state store and the database's events found by the "
            "last reconciliation.",
            multiprocess_mode="livemax",
            registry=r,
        )
        self.reconcile_failures = Counter(
            "execflow_reconcile_failures",
            "Reconciliations that could not run to the end (a server unreachable...).",
            registry=r,
        )

    def _declare_logs_and_api(self, r: CollectorRegistry) -> None:
        """The log writers and the platform API."""
        self.log_lines = Counter(
            "execflow_log_lines",
            "Log lines a process wrote (all its files), by its own log file's name.",
            ["file"],
            registry=r,
        )
        self.log_write_failures = Counter(
            "execflow_log_write_failures", "Log writes that failed (disk full...).", registry=r
        )
        self.log_dropped = Counter(
            "execflow_log_dropped", "Log lines dropped (buffer full).", registry=r
        )
        self.api_requests = Counter(
            "execflow_api_requests",
            "HTTP calls answered by the platform API, by route template and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.api_request_seconds = Histogram(
            "execflow_api_request_seconds",
            "Time to answer one HTTP call, by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        # the labelled children by (method, route, status): ``labels()`` checks and locks
        # on every call, and these are few (route templates) and asked for every request
        self._api_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    # -- what the pipeline calls ---------------------------------------------------------
    def report_received(self) -> None:
        """The dispatcher took one execution report."""
        self._last_report_at = self.clock()
        self.reports_received.inc()
        self.last_report_timestamp.set(self._last_report_at)

    def report_routed(self, queue: str) -> None:
        """The dispatcher routed a report to ``queue``."""
        self.reports_routed.labels(queue).inc()

    def report_ignored(self) -> None:
        """The dispatcher ignored a non-execution message."""
        self.reports_ignored.inc()

    def dead_lettered(self, reason: str) -> None:
        """A message went to the DLQ with ``reason`` (e.g. ``unknown_lifecycle_id``)."""
        self.dlq.labels(reason).inc()

    def declare_component(self, component: str, *, worker: bool) -> None:
        """Create ``component``'s series at zero, so panels and ratios exist before traffic.

        A worker (``worker_open``...) gets every outcome and its parked count too.
        """
        self.processing_seconds.labels(component)
        self.retries.labels(component)
        if worker:
            for outcome in OUTCOMES:
                self.worker_outcomes.labels(component, outcome)
            self.parked_total.labels(component)

    def worker_outcome(self, component: str, outcome: str, seconds: float | None = None) -> None:
        """Worker ``component`` (``worker_open``...) finished a report with ``outcome``."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
        self.worker_outcomes.labels(component, outcome).inc()
        if outcome == "parked":
            self.parked_total.labels(component).inc()
        if seconds is not None:
            self.processing_seconds.labels(component).observe(seconds)

    def observe_processing(self, component: str, seconds: float) -> None:
        """Time one message took in ``component`` (dispatcher, db_writer...)."""
        self.processing_seconds.labels(component).observe(seconds)

    def observe_lp_latency(self, seconds: float) -> None:
        """Time from a request sent to the LP to its report."""
        self.lp_latency_seconds.observe(seconds)

    def retried(self, component: str) -> None:
        """A failed attempt will be retried."""
        self.retries.labels(component).inc()

    def set_queue_depth(self, queue: str, depth: int, consumers: int | None = None) -> None:
        """Messages waiting in ``queue`` (and consumers attached, when known)."""
        self.queue_depth.labels(queue).set(depth)
        if consumers is not None:
            self.queue_consumers.labels(queue).set(consumers)

    def set_stuck_orders(self, count: int) -> None:
        """How many orders are stuck now (``execflow.pipeline.stuck``)."""
        self.stuck_orders.set(count)

    def set_intake_unsent(self, count: int) -> None:
        """How many committed intake actions wait to be sent (``IntakeSends.deferred``)."""
        self.intake_unsent.set(count)

    def reconciled(self, mismatches: int) -> None:
        """A reconciliation ran to the end and found ``mismatches`` differences."""
        self.reconcile_mismatches.set(mismatches)
        self.reconcile_last_success.set(self.clock())

    def reconcile_failed(self) -> None:
        """A reconciliation could not run to the end."""
        self.reconcile_failures.inc()

    def watch_processes(self, processes: Callable[[], Mapping[str, int]]) -> None:
        """Export ``process_*`` of each named process (``run all``: the supervisor's children).

        ``processes`` returns ``{name: pid}``; the series carry ``component`` (the name
        without its ``-N`` instance suffix) and ``process`` (the name). They replace this
        process's own unlabelled ``process_*`` (list it among ``processes`` to keep it).
        """
        if self._own_process is not None:
            self.registry.unregister(self._own_process)
            self._own_process = None
        self.registry.register(ProcessesCollector(processes))

    def api_call(self, method: str, route: str, status: int, seconds: float) -> None:
        """One HTTP call answered (route template, never the ids in the path)."""
        children = self._api_children.get((method, route, status))
        if children is None:
            children = (
                self.api_requests.labels(method, route, str(status)),
                self.api_request_seconds.labels(route),
            )
            self._api_children[(method, route, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    def log_write_failed(self, count: int = 1) -> None:
        """The logging layer failed to write ``count`` lines."""
        self.log_write_failures.inc(count)

    def watch_logs(self, snapshot: Callable[[], LogSnapshot]) -> None:
        """Read the logging layer's counters from ``snapshot`` at every ``refresh``."""
        self._log_snapshot = snapshot

    def watch_replication(self, snapshot: Callable[[], ReplicationSnapshot]) -> None:
        """Read the state store's replication counts from ``snapshot`` at every ``refresh``.

        Only a process whose store waits for replicas (Redis Cluster) calls it: the two
        metrics are declared here, the counter at zero, so another store exports neither
        (a zero there would read as replication checked and fine).
        """
        if self._replication_snapshot is None:
            self._declare_replication(self._own)
        else:
            self._refresh_replication()  # the store watched until now: its last counts
        self._replication_snapshot = snapshot
        self._replication_seen = ReplicationSnapshot()

    def _declare_replication(self, r: CollectorRegistry) -> None:
        self.under_replicated_writes = Counter(
            "execflow_state_under_replicated_writes",
            "State store writes (commits, lifecycle records) acknowledged by fewer replicas "
            "than wait_replicas (Redis Cluster: a master without replica, or a lagging one).",
            registry=r,
        )
        self.master_replicas = Gauge(
            "execflow_state_master_replicas",
            "Online replicas of a Redis Cluster master (node host:port) when the state "
            "store last asked its ROLE (after a WAIT acknowledged fewer than wanted).",
            ["node"],
            # each process asks on its own writes: the latest answer any live one got
            multiprocess_mode="livemostrecent",
            registry=r,
        )

    def add_health_check(self, name: str, check: HealthCheck) -> None:
        """``/healthz`` answers 503 while ``check()`` returns a reason (not ``None``)."""
        self._health_checks[name] = check

    # -- what the server calls -------------------------------------------------------------
    def refresh(self) -> None:
        """Turn the latest cumulative log and replication snapshots into metric updates."""
        self._refresh_logs()
        self._refresh_replication()

    def _refresh_logs(self) -> None:
        if self._log_snapshot is None:
            return
        now = self._log_snapshot()
        seen = self._log_seen
        for name, lines in now.lines_by_file.items():
            delta = lines - seen.lines_by_file.get(name, 0)
            if delta > 0:
                self.log_lines.labels(name).inc(delta)
        if now.write_failures > seen.write_failures:
            self.log_write_failures.inc(now.write_failures - seen.write_failures)
        if now.dropped > seen.dropped:
            self.log_dropped.inc(now.dropped - seen.dropped)
        self._log_seen = LogSnapshot(dict(now.lines_by_file), now.write_failures, now.dropped)

    def _refresh_replication(self) -> None:
        if self._replication_snapshot is None:
            return
        now = self._replication_snapshot()
        seen = self._replication_seen
        if now.under_replicated_writes > seen.under_replicated_writes:
            self.under_replicated_writes.inc(
                now.under_replicated_writes - seen.under_replicated_writes
            )
        for node, replicas in now.replicas_by_node.items():
            # set on a change only: under ``run all`` the newest set wins (livemostrecent)
            if seen.replicas_by_node.get(node) != replicas:
                self.master_replicas.labels(node).set(replicas)
        self._replication_seen = ReplicationSnapshot(
            now.under_replicated_writes, dict(now.replicas_by_node)
        )

    def last_report_age_s(self) -> float:
        """Seconds since the last report, -1 before the first one."""
        if self._last_report_at is None:
            return -1.0
        return max(0.0, self.clock() - self._last_report_at)

    def health(self) -> tuple[bool, dict[str, object]]:
        """``(healthy, document)`` for ``/healthz``."""
        failures: dict[str, str] = {}
        for name, check in self._health_checks.items():
            try:
                reason = check()
            except Exception as exc:  # noqa: BLE001  a broken check is a failed check
                reason = f"{type(exc).__name__}: {exc}"
            if reason is not None:
                failures[name] = reason
        age = self.last_report_age_s()
        document: dict[str, object] = {
            "status": "ok" if not failures else "failing",
            "component": self.component,
            "uptime_s": round(self.clock() - self.started_at, 3),
            "last_report_age_s": None if age < 0 else round(age, 3),
        }
        if failures:
            document["failures"] = failures
        return not failures, document

    def exposition(self) -> bytes:
        """The text exposition format of every metric."""
        self.refresh()
        return generate_latest(self.registry)

    def names(self) -> set[str]:
        """Every sample name this process exposes (for checking dashboards and alerts)."""
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
        return {
            family.name + suffix
            for family in self._own.collect()
            for suffix in suffixes.get(family.type, ("",))
        }


def _require_multiprocess_environment(directory: Path) -> None:
    """Raise ``ConfigError`` unless this process's environment names ``directory``.

    prometheus_client writes the value files under ``PROMETHEUS_MULTIPROC_DIR`` (read
    from the environment only); a process recording for ``directory`` under another one
    would be missing from the aggregate without a word.
    """
    found = prometheus_multiproc_dir()
    if found is None or found.resolve() != directory.resolve():
        raise ConfigError(
            f"multiprocess metrics for {directory} need {PROMETHEUS_MULTIPROC_DIR}={directory}"
            f" in the environment (found: {found or 'unset'}); `run all` sets it for the"
            " processes it starts, next to EXECFLOW_METRICS_MULTIPROC_DIR",
            setting=PROMETHEUS_MULTIPROC_DIR,
        )
