"""``process_*`` metrics of several processes on one endpoint (``run all``'s supervisor).

prometheus_client's ``ProcessCollector`` reads one process's ``/proc/PID`` files and
has no labels; in multiprocess mode only the serving process would be seen. This
collector runs one ``ProcessCollector`` per supervised process and adds ``component``
(the process name without its ``-N`` instance suffix, as every other metric names it)
and ``process`` (the name), so CPU, memory, open files and start time exist per child.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import ProcessCollector
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

__all__ = ["ProcessesCollector", "component_of"]


def component_of(process: str) -> str:
    """``worker_open-2`` -> ``worker_open`` (the second instance of the same component)."""
    base, dash, number = process.rpartition("-")
    return base if dash and number.isdigit() else process


class ProcessesCollector(Collector):
    """``process_*`` per named process; a process that just exited is skipped."""

    def __init__(self, processes: Callable[[], Mapping[str, int]], proc: str = "/proc") -> None:
        self._processes = processes
        self._proc = proc

    def collect(self) -> Iterable[Metric]:
        """One family per ``process_*`` name, one series per process."""
        merged: dict[str, Metric] = {}
        for name, pid in sorted(self._processes().items()):
            labels = {"component": component_of(name), "process": name}
            reader = ProcessCollector(pid=_fixed(pid), proc=self._proc, registry=None)
            for family in reader.collect():
                target = merged.get(family.name)
                if target is None:
                    target = Metric(family.name, family.documentation, family.type, family.unit)
                    merged[family.name] = target
                for sample in family.samples:
                    target.add_sample(
                        sample.name, {**sample.labels, **labels}, sample.value, sample.timestamp
                    )
        return list(merged.values())


def _fixed(pid: int) -> Callable[[], int]:
    """``ProcessCollector`` asks for the pid through a callable."""
    return lambda: pid
