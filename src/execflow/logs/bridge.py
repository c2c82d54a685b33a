"""Route stdlib ``logging`` records (aio_pika, asyncpg, redis, ...) through the event writer.

Installed on the root logger by ``setup_logging``: a record lands in the component's file
with tag ``LOG`` and its message as ``msg``; an ERROR/CRITICAL record is also copied to
provider_errors.log with its traceback and the bound trace context. One handler writes
both copies, so nothing is written twice whatever the caller does.
"""

from __future__ import annotations

import logging
import traceback as tb
from typing import Any

from execflow.logs.events import ERROR, EventLogger

__all__ = ["BridgeHandler", "install_bridge", "remove_bridge"]


class BridgeHandler(logging.Handler):
    """A ``logging.Handler`` writing through an ``EventLogger``."""

    def __init__(self, target: EventLogger, previous_level: int = logging.WARNING) -> None:
        # Let ERROR records through even when the file level is higher: errors always
        # reach provider_errors.log.
        super().__init__(level=min(target.min_level, ERROR))
        self.target = target
        self.previous_level = previous_level

    def emit(self, record: logging.LogRecord) -> None:
        """Write ``record`` (never raises: a broken record is reported by ``handleError``)."""
        try:
            fields: dict[str, Any] = {"msg": record.getMessage()}
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                fields["error_type"] = type(exc).__name__
                fields["error"] = str(exc)
                fields["traceback"] = "".join(tb.format_exception(exc)).rstrip("\n")
            elif record.exc_text:
                fields["traceback"] = record.exc_text
            if record.stack_info:
                fields["stack"] = record.stack_info
            if record.levelno >= ERROR:
                fields["source"] = f"{record.module}:{record.lineno}"
            self.target.bridged(record.levelno, record.name, fields, record.levelno >= ERROR)
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)


def install_bridge(target: EventLogger, level: int) -> BridgeHandler:
    """Put a bridge on the root logger, replacing any earlier one, and set the root level."""
    root = logging.getLogger()
    previous = root.level
    for handler in list(root.handlers):
        if isinstance(handler, BridgeHandler):
            # Replacing a live bridge: the level to restore is the one it saved.
            previous = handler.previous_level
            root.removeHandler(handler)
    bridge = BridgeHandler(target, previous)
    root.addHandler(bridge)
    root.setLevel(min(level, ERROR))
    return bridge


def remove_bridge(handler: BridgeHandler) -> None:
    """Undo ``install_bridge``: remove the handler and restore the root level it found."""
    root = logging.getLogger()
    if handler in root.handlers:
        root.removeHandler(handler)
        root.setLevel(handler.previous_level)
