"""Render docs/domain.md from the domain's own data: statuses, state machines, routing.

Regenerate with ``python -m execflow.domain.docs > docs/domain.md``.
"""

from __future__ import annotations

from execflow.domain.enums import OrderStatus, ReportStatus, RequestKind
from execflow.domain.routing import DeadLetterDecision, Decision, Ignore, Route, route
from execflow.domain.statemachine import LEG_EDGES, ORDER_EDGES

__all__ = ["render_markdown"]

_COLUMNS = (
    ReportStatus.PENDING,
    ReportStatus.MODIFY,
    ReportStatus.EXECUTED,
    ReportStatus.PARTIALLY_FILLED,
    ReportStatus.CANCELLED,
    ReportStatus.REJECTED,
)


def _cell(decision: Decision) -> str:
    if isinstance(decision, Route):
        return decision.worker.value
    if isinstance(decision, Ignore):
        return f"ignore ({decision.reason})"
    if isinstance(decision, DeadLetterDecision):
        return f"DLQ `{decision.reason.value}`"
    raise TypeError(decision)


def render_markdown() -> str:
    """The whole of docs/domain.md."""
    lines = [
        "# Domain: order state machine and routing",
        "",
        "Generated from `execflow.domain` (`python -m execflow.domain.docs > docs/domain.md`);",
        "a test fails when this file and the code disagree. Do not edit by hand.",
        "",
        "## Order statuses",
        "",
        "| status | final | meaning |",
        "|---|---|---|",
    ]
    lines += [f"| {s.value} | {'yes' if s.is_final else ''} | {s.meaning} |" for s in OrderStatus]
    lines += [
        "",
        "## Order state machine",
        "",
        "| from | to | by | when |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {e.source.value if e.source else '(new)'} | {e.target.value} | {e.actor} | "
        f"{e.trigger} |"
        for e in ORDER_EDGES
    ]
    lines += ["", "```mermaid", "stateDiagram-v2"]
    lines += [
        f"    {e.source.value if e.source else '[*]'} --> {e.target.value}: {e.actor}"
        for e in ORDER_EDGES
    ]
    lines += [f"    {s.value} --> [*]" for s in OrderStatus if s.is_final]
    lines += [
        "```",
        "",
        "## Stop-loss / take-profit leg state machine",
        "",
        "| from | to | by | when |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {e.source.value} | {e.target.value} | {e.actor} | {e.trigger} |" for e in LEG_EDGES
    ]
    lines += [
        "",
        "## Routing table (dispatcher)",
        "",
        "Rows: the kind of the request the report answers (its lifecycle id). Columns: the",
        "normalised LP status. Before the table: malformed reports go to DLQ",
        "`malformed_report`, non-execution messages are ignored, a missing or unknown",
        "lifecycle id goes to DLQ `missing_lifecycle_id` / `unknown_lifecycle_id`.",
        "",
        "| request kind | " + " | ".join(c.value for c in _COLUMNS) + " |",
        "|---|" + "---|" * len(_COLUMNS),
    ]
    lines += [
        f"| {kind.value} | " + " | ".join(_cell(route(kind, c)) for c in _COLUMNS) + " |"
        for kind in RequestKind
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover - the regeneration entry point
    import sys

    sys.stdout.write(render_markdown())
