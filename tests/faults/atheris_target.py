"""atheris (libFuzzer) target: ``parse_message`` then ``decide`` on whatever bytes it makes.

Run by ``test_fuzz.py`` as ``python -m tests.faults.atheris_target -runs=N``; any
exception other than ``ReportError`` is a crash and makes the process exit non-zero.
"""

from __future__ import annotations

import sys

import atheris  # type: ignore[import-untyped, import-not-found, unused-ignore]

with atheris.instrument_imports():
    from execflow.domain.enums import RequestKind
    from execflow.domain.messages import ExecutionReport
    from execflow.domain.models import LifecycleRecord
    from execflow.domain.reports import parse_message
    from execflow.domain.routing import DeadLetterDecision, Ignore, Route, decide
    from execflow.errors import ReportError

KINDS = list(RequestKind)


def one_input(data: bytes) -> None:
    """One fuzz case: the first byte picks the request kind, the rest is the message."""
    kind = KINDS[data[0] % len(KINDS)] if data else None
    try:
        outcome: object = parse_message(data[1:])
    except ReportError as exc:
        outcome = exc
    lifecycle = None
    if kind is not None and isinstance(outcome, ExecutionReport) and outcome.lifecycle_id:
        lifecycle = LifecycleRecord(outcome.lifecycle_id, "live:6", "o1", kind)
    decision = decide(outcome, lifecycle)  # type: ignore[arg-type]
    if not isinstance(decision, Route | Ignore | DeadLetterDecision):
        raise AssertionError(f"no decision: {decision!r}")


def main() -> None:
    """Entry point (libFuzzer arguments on the command line)."""
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
