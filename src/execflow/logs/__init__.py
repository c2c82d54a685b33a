"""The provider logging layer: catalog, fast writers, stdlib bridge, stats, retention.

Entry points call ``setup_logging(settings, component)`` once and log through the
returned system's ``events`` (an ``EventLogger``). Importing this package configures
nothing and creates no file.
"""

from execflow.logs.catalog import CATALOG, COMPONENTS, LogFileSpec, file_name, resolve
from execflow.logs.context import bind_trace, current_context, log_context, reset_trace
from execflow.logs.events import CRITICAL, DEBUG, ERROR, INFO, WARNING, EventLogger
from execflow.logs.setup import LogSystem, setup_logging
from execflow.logs.stats import ComponentStats

__all__ = [
    "CATALOG",
    "COMPONENTS",
    "CRITICAL",
    "DEBUG",
    "ERROR",
    "INFO",
    "WARNING",
    "ComponentStats",
    "EventLogger",
    "LogFileSpec",
    "LogSystem",
    "bind_trace",
    "current_context",
    "file_name",
    "log_context",
    "reset_trace",
    "resolve",
    "setup_logging",
]
