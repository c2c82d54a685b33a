"""The QuickFIX side of a FIX session: settings, the Application callbacks.

QuickFIX (C++ engine, SWIG binding) does the session layer: logon / logout, heartbeats and
test requests, sequence numbers, the message store, resend requests, gap fills and
PossDup handling, reconnecting. This module only adapts it:

* ``session_ini`` writes the engine's settings from an ``LpSession`` (pure text);
* ``EngineApplication`` forwards each callback to a ``SessionHandler`` (the asyncio
  side implements it) and never lets a Python exception reach the engine, where the
  binding would end the process with ``Py_Exit`` while holding the session lock;
* the engine's own log is ``execflow.gateway.eventlog``'s C++ log (no call into Python
  per message), for the gateway and the FIX simulator alike.

Callbacks run on the engine's threads, never on the event loop.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import quickfix as fix

from execflow.gateway.fixmap import Fields, msg_type_of, parse_fields, raw_field

__all__ = [
    "EngineApplication",
    "SessionHandler",
    "data_dictionary",
    "fields_message",
    "keep_thread_state",
    "let_thread_state_go",
    "session_ini",
]

BEGIN_STRING = "FIX.4.4"
LOGON = "A"
LOGOUT = "5"


class SessionHandler(Protocol):
    """What the engine's callbacks are forwarded to (called on engine threads)."""

    def on_logon(self) -> None:
        """The session is logged on."""

    def on_logout(self) -> None:
        """The session logged out or the connection dropped."""

    def logon_fields(self) -> Fields:
        """Extra fields for our outgoing Logon (Username 553, Password 554)."""

    def on_admin_out(self, msg_type: str, fields: Fields) -> None:
        """An admin message we send (Logon, Logout, Reject, ResendRequest...)."""

    def on_sent(self, msg_type: str, seq_num: int, clordid: str | None) -> None:
        """An application message the engine stored and is sending (``toApp``)."""

    def on_received(self, msg_type: str, raw: str) -> None:
        """An LP message (application or admin), as its raw FIX text.

        The engine counts it as received only once this returns: a process that dies
        inside this call gets the message again by resend on the next logon.
        """

    def on_engine_event(self, text: str) -> None:
        """A line of the engine's own event log (connects, gaps, rejects, disconnects)."""

    def on_callback_error(self, where: str, exc: BaseException) -> None:
        """A callback raised; ``where`` names it. ``on_received`` errors must not return."""


# The thread state an engine thread keeps between callbacks (``keep_thread_state``). A
# ``threading.local`` lives in the thread state's own dict: a state made for one callback
# never has it, the kept one does (so a reused thread id is never taken for a kept one).
_kept = threading.local()
_PYGILSTATE_LOCKED = 0  # PyGILState_STATE of an Ensure called with the GIL held
_ensure = ctypes.pythonapi.PyGILState_Ensure
_ensure.argtypes = []
_ensure.restype = ctypes.c_int
_release = ctypes.pythonapi.PyGILState_Release
_release.argtypes = [ctypes.c_int]
_release.restype = None


def keep_thread_state() -> None:
    """Keep the calling engine thread's Python thread state between its callbacks.

    QuickFIX's threads are not Python's. The binding (SWIG directors) enters Python with
    ``PyGILState_Ensure`` and leaves with ``PyGILState_Release``, which on such a thread
    makes a new thread state for every callback and destroys it after: its frame stack
    mapped and unmapped, its native id read, its dicts cleared (a ``gettid``, an ``mmap``
    and a ``munmap`` per message on the engine's thread, seen with ``strace``; the
    ``munmap`` while holding the GIL, which the event loop is waiting for). One more
    ``Ensure`` on the thread's first message keeps that state for the callbacks after it;
    ``let_thread_state_go`` gives it back when the session logs out. CPython's documented
    C API, called through ``ctypes`` because the binding offers no hook of its own.
    """
    if getattr(_kept, "held", False):
        return
    _ensure()
    _kept.held = True


def let_thread_state_go() -> None:
    """Undo ``keep_thread_state`` on the calling thread (no-op where it was not kept).

    Called inside a callback: the binding's own ``Ensure`` still holds the state, so it
    ends with that callback, as every state did before."""
    if not getattr(_kept, "held", False):
        return
    _kept.held = False
    _release(_PYGILSTATE_LOCKED)


def data_dictionary() -> Path:
    """The FIX 4.4 data dictionary shipped with the quickfix package."""
    candidates = [Path(sys.prefix) / "share" / "quickfix" / "FIX44.xml"]
    try:
        for file in importlib.metadata.files("quickfix") or ():
            if file.name == "FIX44.xml":
                candidates.append(Path(str(file.locate())))
    except importlib.metadata.PackageNotFoundError:
        pass
    for path in candidates:
        if path.is_file():
            return path.resolve()
    raise FileNotFoundError("FIX44.xml of the quickfix package not found")


def session_ini(
    *,
    connection: str,
    sender_comp_id: str,
    target_comp_id: str,
    store_dir: Path | None,
    dictionary: Path,
    heartbeat_s: int = 30,
    host: str = "127.0.0.1",
    port: int,
    reset_on_logon: bool = False,
    reconnect_s: int = 1,
    start_time: str | None = None,
    end_time: str | None = None,
) -> str:
    """The engine's settings (INI text) for one session.

    Validation is relaxed on purpose: an LP's user-defined or out-of-order fields must
    reach our normaliser and guard (which refuse visibly, to the DLQ), not be rejected
    by the engine at session level where the report would silently never arrive.
    """
    if (start_time is None) != (end_time is None):
        raise ValueError("start_time and end_time go together")
    default = [
        "[DEFAULT]",
        f"ConnectionType={connection}",
        f"HeartBtInt={heartbeat_s}",
        f"ReconnectInterval={reconnect_s}",
        # 00:00:00-00:00:00 is QuickFIX's 24h session
        f"StartTime={start_time or '00:00:00'}",
        f"EndTime={end_time or '00:00:00'}",
        "UseDataDictionary=Y",
        f"DataDictionary={dictionary}",
        "ValidateUserDefinedFields=N",
        "AllowUnknownMsgFields=Y",
        "ValidateFieldsOutOfOrder=N",
        "ValidateFieldsHaveValues=N",
        "PersistMessages=Y",
        f"ResetOnLogon={'Y' if reset_on_logon else 'N'}",
        "ResetOnLogout=N",
        "ResetOnDisconnect=N",
        "RefreshOnLogon=Y",
        "SocketNodelay=Y",
        "LogonTimeout=10",
        "LogoutTimeout=2",
        "TimestampPrecision=6",
        "CheckLatency=N",
    ]
    if store_dir is not None:
        default.append(f"FileStorePath={store_dir}")
    session = [
        "[SESSION]",
        f"BeginString={BEGIN_STRING}",
        f"SenderCompID={sender_comp_id}",
        f"TargetCompID={target_comp_id}",
    ]
    if connection == "initiator":
        session += [f"SocketConnectHost={host}", f"SocketConnectPort={port}"]
    else:
        session += [f"SocketAcceptPort={port}", "SocketReuseAddress=Y"]
    return "\n".join([*default, "", *session, ""])


def engine_settings(ini: str) -> Any:
    """A ``quickfix.SessionSettings`` from INI text."""
    settings = fix.SessionSettings()
    settings.setFromString(ini)
    return settings


def fields_message(msg_type: str, fields: Fields, dictionary: Any) -> Any:
    """A ``quickfix.Message`` with ``fields`` as its body (groups parsed by the dictionary).

    The header's session fields are filled in by ``Session.sendToTarget``. BodyLength
    (9) and CheckSum (10) are placeholders: the engine parses without validating and
    sets both when it serialises the message for the store and the socket (the trailer
    must be there all the same: without it the parser loses repeating groups). Counted
    under cachegrind, the text costs 24 k instructions per request this way, 41 k with
    the checksum worked out in Python.
    """
    body = "".join([f"35={msg_type}\x01", *[f"{tag}={value}\x01" for tag, value in fields]])
    return fix.Message(f"8={BEGIN_STRING}\x019={len(body)}\x01{body}10=000\x01", dictionary, False)


def _msg_type(message: Any) -> str:
    return str(message.getHeader().getField(35))


class EngineApplication(fix.Application):  # type: ignore[misc]
    """QuickFIX callbacks, forwarded to a ``SessionHandler``; exceptions never escape."""

    def __init__(self, handler: SessionHandler) -> None:
        super().__init__()
        self._handler = handler

    def onCreate(self, session_id: Any) -> None:
        return None

    def onLogon(self, session_id: Any) -> None:
        self._guard("onLogon", self._handler.on_logon)

    def onLogout(self, session_id: Any) -> None:
        self._guard("onLogout", self._handler.on_logout)
        let_thread_state_go()

    def toAdmin(self, message: Any, session_id: Any) -> None:
        def run() -> None:
            msg_type = _msg_type(message)
            if msg_type == LOGON:
                for tag, value in self._handler.logon_fields():
                    message.setField(tag, value)
            self._handler.on_admin_out(msg_type, parse_fields(message.toString())[1])

        self._guard("toAdmin", run)

    def toApp(self, message: Any, session_id: Any) -> None:
        def run() -> None:
            # one call into the binding (each lets go of the GIL), three string searches
            raw = message.toString()
            seq = raw_field(raw, 34) or "0"
            self._handler.on_sent(msg_type_of(raw), int(seq), raw_field(raw, 11))

        self._guard("toApp", run)

    def fromAdmin(self, message: Any, session_id: Any) -> None:
        self._received(message)

    def fromApp(self, message: Any, session_id: Any) -> None:
        self._received(message, keep_state=True)  # the session is logged on

    def _received(self, message: Any, *, keep_state: bool = False) -> None:
        try:
            if keep_state:
                keep_thread_state()
            raw = message.toString()
            self._handler.on_received(msg_type_of(raw), raw)
        except BaseException as exc:  # noqa: BLE001 - must never reach the engine
            self._handler.on_callback_error("fromApp", exc)

    def _guard(self, where: str, call: Callable[[], None]) -> None:
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - must never reach the engine
            self._handler.on_callback_error(where, exc)
