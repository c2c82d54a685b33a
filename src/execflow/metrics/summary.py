"""Per-component figures read back from a metrics registry (for the ops console).

Pure over the registry's collected samples: outcomes by outcome and processing times
(count, mean and bucket-bound percentiles) per component, and dead letters by reason.
A component is the value of the metric's one label that is not ``outcome`` / ``le``
(``worker`` or ``component``), so a renamed label keeps working. Percentiles come from
the histogram's buckets: the upper bound of the bucket holding the rank, an "at most".
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

__all__ = ["ComponentFigures", "RegistryFigures", "read_figures"]

_OUTCOMES = "execflow_worker_outcomes"
_PROCESSING = "execflow_processing_seconds"
_DLQ = "execflow_dlq"
_SKIP_LABELS = frozenset({"outcome", "le"})
_QUANTILES = (("p50_ms", 0.50), ("p95_ms", 0.95), ("p99_ms", 0.99))


@dataclass(frozen=True, slots=True)
class ComponentFigures:
    """What the registry knows of one component."""

    component: str
    outcomes: dict[str, int] = field(default_factory=dict)
    processed: int = 0
    mean_ms: float | None = None
    percentiles_ms: dict[str, float | None] = field(default_factory=dict)

    @property
    def handled(self) -> int:
        """Messages settled with a counted outcome."""
        return sum(self.outcomes.values())

    @property
    def success_rate(self) -> float | None:
        """Successes over counted outcomes; None when nothing was counted."""
        handled = self.handled
        return None if handled == 0 else self.outcomes.get("success", 0) / handled


@dataclass(frozen=True, slots=True)
class RegistryFigures:
    """Every component's figures, and dead letters by reason."""

    components: dict[str, ComponentFigures]
    dead_lettered: dict[str, int]


def _component(labels: Mapping[str, str]) -> str | None:
    for name, value in labels.items():
        if name not in _SKIP_LABELS:
            return value
    return None


def _bucket_bound(buckets: list[tuple[float, float]], rank: float) -> float | None:
    """The upper bound (ms) of the first cumulative bucket reaching ``rank``."""
    for bound, cumulative in buckets:
        if cumulative >= rank:
            return None if math.isinf(bound) else bound * 1000.0
    return None


def _histograms(family: Metric) -> dict[str, tuple[float, float, list[tuple[float, float]]]]:
    """``component -> (count, sum_s, [(le, cumulative)])``."""
    count: dict[str, float] = defaultdict(float)
    total: dict[str, float] = defaultdict(float)
    buckets: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for sample in family.samples:
        labels = {k: v for k, v in sample.labels.items() if k != "le"}
        name = _component(labels)
        if name is None:
            continue
        if sample.name.endswith("_bucket"):
            buckets[name].append((float(sample.labels["le"]), sample.value))
        elif sample.name.endswith("_count"):
            count[name] += sample.value
        elif sample.name.endswith("_sum"):
            total[name] += sample.value
    return {name: (count[name], total[name], sorted(buckets[name])) for name in count}


def read_figures(registry: CollectorRegistry) -> RegistryFigures:
    """Figures of every component the registry has samples for."""
    return figures_of(registry.collect())


def figures_of(families: Iterable[Metric]) -> RegistryFigures:
    """``read_figures`` over already collected families."""
    outcomes: dict[str, dict[str, int]] = defaultdict(dict)
    timings: dict[str, tuple[float, float, list[tuple[float, float]]]] = {}
    dead: dict[str, int] = {}
    for family in families:
        if family.name == _OUTCOMES:
            for sample in family.samples:
                name = _component(sample.labels)
                if name is None or not sample.name.endswith("_total"):
                    continue
                outcome = sample.labels.get("outcome", "unknown")
                outcomes[name][outcome] = outcomes[name].get(outcome, 0) + int(sample.value)
        elif family.name == _PROCESSING:
            timings = _histograms(family)
        elif family.name == _DLQ:
            for sample in family.samples:
                reason = sample.labels.get("reason")
                if reason is not None and sample.name.endswith("_total"):
                    dead[reason] = dead.get(reason, 0) + int(sample.value)
    components: dict[str, ComponentFigures] = {}
    for name in sorted(set(outcomes) | set(timings)):
        count, total_s, buckets = timings.get(name, (0.0, 0.0, []))
        percentiles = {key: _bucket_bound(buckets, share * count) for key, share in _QUANTILES}
        components[name] = ComponentFigures(
            component=name,
            outcomes=dict(sorted(outcomes.get(name, {}).items())),
            processed=int(count),
            mean_ms=total_s / count * 1000.0 if count else None,
            percentiles_ms=percentiles if count else {},
        )
    return RegistryFigures(components, dict(sorted(dead.items())))
