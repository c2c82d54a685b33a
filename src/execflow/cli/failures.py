"""How a command fails: one line on stderr, a documented exit code, ``PROCESS:FAILED`` logged.

Two pieces, each in one place:

- ``process_logging`` replaces ``setup_logging`` in every command that logs (the ``run``
  processes, ``simulate``, ``order``, ``dlq``, ``state``, ``seed``, ``reconcile``): an
  exception that ends the command is written as ``PROCESS:FAILED`` (reason, server,
  masked URL, error) to the component's log and, being CRITICAL, to provider_errors.log.
- ``FailureBoundary`` is the root command's class: an exception that escapes any command
  becomes one line on stderr and an exit code; the traceback only with ``--debug``. A
  usage error (a bad option value, an unknown name, a file that cannot be written) is one
  line too, ``execflow: COMMAND: what is wrong (see --help)``, exit code 2.

Exit codes (README, "Exit codes"):

====  =====================================================================
0     done
1     a check failed (reconcile found differences, an order was refused, ...)
2     bad usage or configuration (a setting, an argument, a seed file, reference data
      missing from the state store)
3     a server (broker, state store, database) unreachable or failing
4     an unexpected internal error (its traceback is in the log)
====  =====================================================================
"""

from __future__ import annotations

import logging
import select
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import typer
from typer._click.exceptions import UsageError
from typer.core import TyperGroup

from execflow.errors import (
    BusError,
    ConfigError,
    DatabaseError,
    ExecflowError,
    StoreError,
    VersionConflict,
)
from execflow.logs.masking import mask_url
from execflow.logs.setup import LogSystem, setup_logging
from execflow.pipeline.refdata import MissingReferenceData
from execflow.safetext import safe_text
from execflow.settings import Settings

__all__ = [
    "EXIT_CHECK_FAILED",
    "EXIT_INTERNAL",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "Failure",
    "FailureBoundary",
    "classify",
    "library_stderr",
    "process_logging",
]

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERNAL = 4

# The stderr line is for a person: an underlying error longer than this is cut (the log
# keeps it whole).
_MAX_CAUSE_CHARS = 300


@dataclass(frozen=True, slots=True)
class Failure:
    """What an exception means for the operator: exit code, reason, one line, log fields."""

    code: int
    reason: str
    line: str
    fields: dict[str, Any] = field(default_factory=dict)


def _servers(settings: Settings | None) -> dict[type[ExecflowError], tuple[str, str | None]]:
    return {
        BusError: ("broker", settings.broker_url if settings else None),
        StoreError: ("state store", settings.state_url if settings else None),
        DatabaseError: ("database", settings.database_url if settings else None),
    }


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    if cause is None:
        error = getattr(exc, "fields", {}).get("error")
        return str(error) if error else ""
    text = str(cause)
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__


def _one_line(text: str) -> str:
    shown = safe_text(mask_url(text))
    if len(shown) > _MAX_CAUSE_CHARS:
        shown = shown[: _MAX_CAUSE_CHARS - 3] + "..."
    return shown


def _plain(exc: BaseException) -> dict[str, Any]:
    return {"error_type": type(exc).__name__, "error": mask_url(str(exc))}


def _described(exc: BaseException) -> str:
    return _one_line(f"{type(exc).__name__}: {exc}" if str(exc) else repr(exc))


def _server_failure(exc: ExecflowError, settings: Settings | None) -> Failure:
    server, configured = next(
        named for kind, named in _servers(settings).items() if isinstance(exc, kind)
    )
    url = exc.fields.get("url") or configured
    cause = _cause(exc)
    at = f" at {mask_url(str(url))}" if url else ""
    line = f"{server} unreachable or failing{at}: {_one_line(exc.message)}"
    if cause:
        line += f" ({_one_line(cause)})"
    fields: dict[str, Any] = {
        "server": server,
        "url": mask_url(str(url)) if url else None,
        "error_type": type(exc).__name__,
        "error": mask_url(exc.message),
        "cause": mask_url(cause) if cause else None,
    }
    return Failure(EXIT_UNREACHABLE, "server_unreachable", line, fields)


def classify(exc: BaseException, settings: Settings | None = None) -> Failure:
    """The failure ``exc`` stands for; ``settings`` fill in a URL the error does not carry."""
    if isinstance(exc, ConfigError):
        line = f"configuration error: {_one_line(exc.message)}"
        return Failure(EXIT_USAGE, "configuration", line, {"error": mask_url(exc.message)})
    if isinstance(exc, MissingReferenceData):
        # a StoreError by type, but the server answered: the deployment lacks its seed data
        line = f"reference data missing: {_one_line(str(exc))}"
        return Failure(EXIT_USAGE, "missing_reference_data", line, _plain(exc))
    if isinstance(exc, BusError | StoreError | DatabaseError) and not isinstance(
        exc, VersionConflict
    ):
        return _server_failure(exc, settings)
    if isinstance(exc, ConnectionError):
        # a client library's own error that no backend wrapped (a server that went away)
        line = f"a server is unreachable: {_described(exc)}"
        return Failure(EXIT_UNREACHABLE, "server_unreachable", line, _plain(exc))
    return Failure(
        EXIT_INTERNAL, "internal_error", f"internal error: {_described(exc)}", _plain(exc)
    )


def _is_failure(exc: BaseException) -> bool:
    """An exception that ends a command badly (not an exit, a usage error or Ctrl-C)."""
    # TyperException is the base of click's usage errors (typer vendors click)
    return isinstance(exc, Exception) and not isinstance(
        exc, typer.Exit | typer.Abort | typer.TyperException
    )


@contextmanager
def process_logging(settings: Settings, component: str, **kwargs: Any) -> Iterator[LogSystem]:
    """``setup_logging`` for ``component``; a failure ending the block is logged first.

    The line is ``PROCESS:FAILED`` at CRITICAL (so provider_errors.log has it too) with the
    reason, the server and its masked URL; an internal error adds its traceback.
    """
    with setup_logging(settings, component, **kwargs) as logs:
        try:
            yield logs
        except BaseException as exc:
            if _is_failure(exc):
                failure = classify(exc, settings)
                fields = {k: v for k, v in failure.fields.items() if v is not None}
                if failure.code == EXIT_INTERNAL:
                    fields["traceback"] = mask_url("".join(traceback.format_exception(exc)))
                logs.logger(component).critical(
                    "PROCESS:FAILED",
                    component=component,
                    instance=settings.instance,
                    reason=failure.reason,
                    exit_code=failure.code,
                    **fields,
                )
            raise


@contextmanager
def library_stderr(debug: bool) -> Iterator[None]:
    """Keep client libraries' own warnings off stderr unless ``--debug``.

    Inside a process's logging they reach its log file through the bridge; outside it
    (``bench``'s relay pass, a reconnect attempt after logging closed) the stdlib's
    ``lastResort`` would print them, and an outage would show as several lines instead
    of the one that names it.
    """
    saved = logging.lastResort
    if not debug:
        logging.lastResort = logging.NullHandler()
    try:
        yield
    finally:
        logging.lastResort = saved


class FailureBoundary(TyperGroup):
    """The root command: an exception escaping a command is one stderr line and an exit code."""

    def invoke(self, ctx: Any) -> Any:  # typer's vendored click.Context
        """Run the command; turn a failure into its line and exit code (``--debug``: traceback)."""
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            # click would print the usage, a hint and a boxed message: one line instead
            where = exc.ctx.command_path if exc.ctx is not None else "execflow"
            sys.stderr.write(
                safe_text(f"execflow: {where}: {exc.format_message()} (see --help)") + "\n"
            )
            sys.stderr.flush()
            raise typer.Exit(EXIT_USAGE) from None
        except Exception as exc:
            if not _is_failure(exc):
                raise
            if isinstance(exc, BrokenPipeError) and _stdout_closed():
                # not a server: whoever read our output stopped reading (`| head`); typer
                # ends that silently with exit code 1, as it does outside a command
                raise
            state = ctx.obj
            settings = getattr(state, "loaded_settings", None)
            failure = classify(exc, settings)
            if getattr(state, "debug", False):
                sys.stderr.write(mask_url("".join(traceback.format_exception(exc))))
            sys.stderr.write(f"execflow: {failure.line}\n")
            sys.stderr.flush()
            raise typer.Exit(failure.code) from None


def _stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader left (the pipe polls as an error)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False
