"""Trace context: fields (``trace_id``, ``order_id``, ...) added to every line while bound.

Backed by one ``contextvars.ContextVar``, so each asyncio task and thread sees its own
binding and a child task inherits its parent's.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from types import MappingProxyType
from typing import Any

__all__ = ["bind_trace", "current_context", "log_context", "reset_trace"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_CONTEXT: ContextVar[Mapping[str, Any]] = ContextVar("execflow_log_context", default=_EMPTY)


def current_context() -> Mapping[str, Any]:
    """The fields bound in the current context (read-only; empty when none)."""
    return _CONTEXT.get()


def bind_trace(**fields: Any) -> Token[Mapping[str, Any]]:
    """Add ``fields`` (e.g. ``trace_id=...``) to the context; ``None`` values unbind a key.

    Returns the token for ``reset_trace``; prefer ``log_context`` where a block fits.
    """
    merged = dict(_CONTEXT.get())
    for key, value in fields.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return _CONTEXT.set(MappingProxyType(merged))


def reset_trace(token: Token[Mapping[str, Any]]) -> None:
    """Restore the context as it was before the ``bind_trace`` that returned ``token``."""
    _CONTEXT.reset(token)


@contextmanager
def log_context(**fields: Any) -> Iterator[Mapping[str, Any]]:
    """Bind ``fields`` for the duration of the block: ``with log_context(trace_id=t): ...``."""
    token = bind_trace(**fields)
    try:
        yield _CONTEXT.get()
    finally:
        _CONTEXT.reset(token)
