"""The one exception tree of execflow; every error carries structured fields."""

from __future__ import annotations

from typing import Any

__all__ = [
    "ApiError",
    "AuditError",
    "BusError",
    "ConfigError",
    "DatabaseError",
    "ExecflowError",
    "ReportError",
    "StoreError",
    "TransitionError",
    "VersionConflict",
]


class ExecflowError(Exception):
    """Base of every execflow error; ``fields`` go into log lines as key=value pairs."""

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields: dict[str, Any] = fields

    def __str__(self) -> str:
        if not self.fields:
            return self.message
        extra = " ".join(f"{k}={v}" for k, v in self.fields.items())
        return f"{self.message} ({extra})"


class ConfigError(ExecflowError):
    """A setting is invalid; the message names the setting."""


class ReportError(ExecflowError):
    """An execution report is malformed; ``field`` and ``reason`` say why."""

    def __init__(self, field: str, reason: str, **fields: Any) -> None:
        super().__init__(f"invalid report field {field!r}: {reason}", field=field, **fields)
        self.field = field
        self.reason = reason


class TransitionError(ExecflowError):
    """A transition cannot be applied to the order as it is."""


class StoreError(ExecflowError):
    """The state store failed (unreachable, timed out) after its retries."""


class VersionConflict(StoreError):
    """A compare-and-set lost: the order or account changed meanwhile."""


class BusError(ExecflowError):
    """The message bus failed (publish not confirmed, connection lost)."""


class DatabaseError(ExecflowError):
    """The SQL database failed."""


class AuditError(ExecflowError):
    """An event cannot enter the audit chain (a value with no canonical JSON form)."""


class ApiError(ExecflowError):
    """An HTTP call refused with a problem document (RFC 9457): ``status`` and ``code``."""

    def __init__(self, status: int, code: str, detail: str = "", **fields: Any) -> None:
        super().__init__(detail or code, status=status, code=code, **fields)
        self.status = status
        self.code = code
        self.detail = detail
