"""Whether the state store holds a complete state: its marker, and the guard on fallbacks.

A rebuild writes ``STATE_MARKER`` last (``pipeline.rebuild``); a Redis restart without
persistence loses it with everything else. While it is missing, the store is being
rebuilt (or is about to be), and the database may still be behind the events already
published: an account read from the database then and cached back would be taken for a
restored one by the rebuild (which writes only what is missing) and could lack effects
that reach the database a moment later (docs/state-rebuild.md). So a fallback to the
database waits for the marker: ``require_complete`` raises a retryable ``StoreError``.
"""

from __future__ import annotations

from execflow.backends.state import StateStore
from execflow.errors import StoreError

__all__ = ["REBUILD_CLAIM", "STATE_MARKER", "StoreIncomplete", "mark_complete", "require_complete"]

STATE_MARKER = "__execflow_state_complete__"
"""A lifecycle-index entry written once the store holds a complete state (at start, after a
rebuild); gone after a Redis restart without persistence, which is how a process tells a
store that came back empty from one that only was unreachable."""

REBUILD_CLAIM = "__execflow_state_rebuilding__"
"""Written (set-if-absent) by the process that rebuilds after a state loss."""


class StoreIncomplete(StoreError):
    """The state store lost its contents and is not rebuilt yet: retry once it is."""


async def require_complete(state: StateStore, what: str, key: str) -> None:
    """Raise ``StoreIncomplete`` unless the store carries its completeness marker."""
    if await state.get_lifecycle(STATE_MARKER) is None:
        raise StoreIncomplete(
            "state store lost its contents and is not rebuilt yet: not loading from the "
            "database before the rebuild",
            what=what,
            key=key,
        )


async def mark_complete(state: StateStore) -> None:
    """Write the marker: the store holds a complete state."""
    await state.put_lifecycle(STATE_MARKER, {"marker": STATE_MARKER})
