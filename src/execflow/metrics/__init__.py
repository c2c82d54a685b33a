"""Prometheus metrics and a health endpoint for one execflow process.

API (what the pipeline calls)::

    from execflow.metrics import Metrics, MetricsServer, LogSnapshot, ReplicationSnapshot

    metrics = Metrics("dispatcher")                  # own registry per process
    metrics = Metrics("worker_open", multiprocess_dir=path)  # a `run all` child (records)
    metrics = Metrics("supervisor", aggregate_dir=path)  # `run all`: every child, one endpoint
    server = MetricsServer(metrics, settings.metrics_host, settings.metrics_port).start()

    metrics.report_received()                        # dispatcher took a report
    metrics.report_routed("worker_open")             # ... and routed it
    metrics.report_ignored()                         # non-execution message
    metrics.dead_lettered("unknown_lifecycle_id")    # DLQ, by reason
    metrics.worker_outcome("open", "success", seconds=0.012)
        # outcome: success | failure | skipped | parked | dead_lettered
    metrics.observe_processing("dispatcher", 0.0008)
    metrics.observe_lp_latency(0.045)
    metrics.retried("close")
    metrics.set_queue_depth("worker_open", 12, consumers=2)
    metrics.set_stuck_orders(3)                      # dispatcher's stuck-order watch
    metrics.log_write_failed()
    metrics.watch_logs(lambda: LogSnapshot(lines_by_file={...}, write_failures=0, dropped=0))
    metrics.watch_replication(lambda: ReplicationSnapshot(3, {"10.0.0.1:7001": 0}))
        # Redis Cluster store only: execflow_state_under_replicated_writes_total and
        # execflow_state_master_replicas{node}; other stores export neither
    metrics.add_health_check("bus", lambda: None if bus_ok() else "bus disconnected")
    server.stop()

Labels are components, queues, outcomes and reasons: never order or user ids.
The server runs in a daemon thread and binds 127.0.0.1 unless told otherwise.
"""

from execflow.metrics.registry import (
    LATENCY_BUCKETS_S,
    OUTCOMES,
    LogSnapshot,
    Metrics,
    ReplicationSnapshot,
)
from execflow.metrics.server import MetricsServer

__all__ = [
    "LATENCY_BUCKETS_S",
    "OUTCOMES",
    "LogSnapshot",
    "Metrics",
    "MetricsServer",
    "ReplicationSnapshot",
]
