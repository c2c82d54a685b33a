"""Turn one event into one line, text or JSON, per docs/log-format.md.

Built for the hot path: per-key decisions (safe spelling, secret or not) are cached, the
timestamp prefix is recomputed once a second, and common value types skip every check
they do not need. Every value goes through masking; no value can forge a line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from time import gmtime, strftime, time_ns
from typing import Any

import orjson

from execflow.logs.masking import MASK, is_secret_key, mask_url

__all__ = [
    "ECS_VERSION",
    "LEVEL_NAMES",
    "SERVICE_NAME",
    "Timestamper",
    "ecs_message",
    "json_line",
    "quote",
    "safe_name",
    "text_fields",
    "text_line",
    "text_value",
]

LEVEL_NAMES: Mapping[int, str] = {
    10: "DEBUG",
    20: "INFO",
    30: "WARNING",
    40: "ERROR",
    50: "CRITICAL",
}

# A bare value must not contain these: space, quote, '=', backslash, C0/C1 controls,
# DEL, the Unicode line separators, the bidi controls (which make `cat` or `tail -f` show a
# line in another order than it was written) and lone surrogates (which cannot be encoded).
_UNSAFE = re.compile(
    '[\x00-\x20"=\\\\\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]'
)
# orjson leaves these unescaped inside a JSON string; escape them too so no reader that
# splits on Unicode line boundaries (str.splitlines) or renders bidi text can be fooled.
_EXTRA_ESCAPE = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
# The same characters in orjson's UTF-8 output (JSON lines): DEL, C1 (incl. the 8-bit CSI
# of terminal escapes), U+2028/U+2029, the bidi controls. Only inside strings there.
_EXTRA_ESCAPE_UTF8 = re.compile(
    b"\x7f|\xc2[\x80-\x9f]|\xd8\x9c|\xe2\x80[\x8e\x8f\xa8-\xae]|\xe2\x81[\xa6-\xa9]"
)
_KEY_BAD = re.compile(r"[^A-Za-z0-9_.]")
_MAX_CACHE = 4096
# "000" ... "999": the milliseconds and the last three digits of the microseconds.
_DIGITS3: tuple[str, ...] = tuple(f"{n:03d}" for n in range(1000))

# The four module-level memos below (_KEYS, _NAMES, _STRINGS, _TEMPLATES) are pure
# memoisation of pure functions: each maps an immutable key (a str, a tuple of str) to what
# a deterministic function of that key alone computes (a str, a bool, a compiled template
# whose type guards fall back to the general path), and an entry never changes once
# stored. So there is no aliasing rule and no state to own: sharing them across every
# LogSystem and thread of the process is only faster (a race computes an entry twice, the
# same). Each is bounded so free-form keys cannot grow memory forever.
# key -> (" key=", is_secret)
_KEYS: dict[str, tuple[str, bool]] = {}
_NAMES: dict[str, str] = {}
_STRINGS: dict[str, str] = {}
# field keys (in call order) -> the compiled writer of such lines (see _template); few
# shapes exist, and each costs a code object, so the cap is lower than the caches above.
LineTemplate = Callable[["Timestamper", str, Mapping[str, Any], Mapping[str, Any]], bytes]
_TEMPLATES: dict[tuple[str, ...], LineTemplate] = {}
_MAX_TEMPLATES = 256

# JSON lines use Elastic-Common-Schema names for these fields.
_JSON_RENAME: Mapping[str, str] = {
    "trace_id": "trace.id",
    "error_type": "error.type",
    "error": "error.message",
    "traceback": "error.stack_trace",
}


class Timestamper:
    """``2026-11-29T12:47:00.123456Z`` for now; the part up to the millisecond is cached."""

    __slots__ = ("_second", "cached")

    def __init__(self) -> None:
        # (milliseconds since the epoch, "YYYY-MM-DDTHH:MM:SS.mmm"): replaced as one tuple,
        # so a concurrent thread sees either the old or the new pair. Line templates read it.
        self.cached: tuple[int, str] = (-1, "")
        self._second: tuple[int, str] = (-1, "")

    def __call__(self) -> str:
        """The current UTC time with microseconds (truncated)."""
        now_us = time_ns() // 1000
        cached = self.cached
        if cached[0] != now_us // 1000:
            cached = self.millisecond(now_us // 1000)
        return f"{cached[1]}{_DIGITS3[now_us % 1000]}Z"

    def millisecond(self, now_ms: int) -> tuple[int, str]:
        """Cache and return the prefix of millisecond ``now_ms`` (strftime once a second)."""
        sec, milli = divmod(now_ms, 1000)
        second = self._second
        if second[0] != sec:
            second = (sec, strftime("%Y-%m-%dT%H:%M:%S.", gmtime(sec)))
            self._second = second
        cached = (now_ms, second[1] + _DIGITS3[milli])
        self.cached = cached
        return cached


def safe_name(name: str) -> str:
    """``name`` with every character outside ``[A-Za-z0-9_.:-]`` replaced by ``_``."""
    cached = _NAMES.get(name)
    if cached is None:
        cached = re.sub(r"[^A-Za-z0-9_.:\-]", "_", name) or "_"
        if len(_NAMES) < _MAX_CACHE:
            _NAMES[name] = cached
    return cached


def _key_entry(key: str) -> tuple[str, bool]:
    entry = _KEYS.get(key)
    if entry is None:
        spelled = _KEY_BAD.sub("_", key) or "_"
        if not (spelled[0].isalpha() or spelled[0] == "_"):
            spelled = "_" + spelled
        entry = (f" {spelled}=", is_secret_key(key))
        if len(_KEYS) < _MAX_CACHE:
            _KEYS[key] = entry
    return entry


def quote(text: str) -> str:
    """``text`` as a JSON string literal with every control character escaped."""
    try:
        quoted = orjson.dumps(text).decode()
    except orjson.JSONEncodeError:
        # Lone surrogates: the stdlib encoder escapes them as \udXXX instead of failing.
        return json.dumps(text, ensure_ascii=True)
    if _EXTRA_ESCAPE.search(quoted) is not None:
        quoted = _EXTRA_ESCAPE.sub(lambda m: f"\\u{ord(m[0]):04x}", quoted)
    return quoted


def _mask_nested(value: Any) -> Any:
    if isinstance(value, str):
        return mask_url(value)
    if isinstance(value, Mapping):
        return {
            str(k): MASK if is_secret_key(str(k)) else _mask_nested(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_mask_nested(v) for v in value]
    return value


def _stringify(value: Any) -> str:
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping | list | tuple | set | frozenset):
        masked = _mask_nested(value)
        try:
            return orjson.dumps(masked, default=str).decode()
        except (orjson.JSONEncodeError, TypeError):
            # integers beyond 64 bits, deep nesting, non-str keys: the stdlib encoder
            # takes them (a log call must never raise into its caller)
            return json.dumps(masked, default=str, separators=(",", ":"), ensure_ascii=False)
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    return str(value)


def text_value(value: Any) -> str:
    """One value as written after ``key=``: bare when safe, else a JSON string literal."""
    kind = type(value)
    if kind is int or kind is Decimal:
        # Decimal's str is digits, sign, '.', 'E', or NaN/Infinity: always safe bare.
        return str(value)
    if kind is float:
        return repr(value)
    if kind is bool:
        return "true" if value else "false"
    if value is None:
        return "null"
    text = value if kind is str else _stringify(value)
    if "://" in text:
        text = mask_url(text)
    if text and _UNSAFE.search(text) is None:
        return text
    return quote(text)


def _rendered_str(text: str) -> str:
    rendered = _STRINGS.get(text)
    if rendered is None:
        rendered = text_value(text)
        # Symbols, users, sides and statuses repeat endlessly: remember how they render.
        if len(_STRINGS) < _MAX_CACHE and len(text) <= 64:
            _STRINGS[text] = rendered
    return rendered


def _fields_one_by_one(fields: Mapping[str, Any]) -> str:
    out = ""
    keys_get = _KEYS.get
    for key, value in fields.items():
        prefix, secret = keys_get(key) or _key_entry(key)
        if secret:
            out += prefix + MASK
            continue
        kind = type(value)
        if kind is str:
            out += prefix + (_STRINGS.get(value) or _rendered_str(value))
        elif kind is int or kind is Decimal:
            out += prefix + str(value)
        elif kind is float:
            out += prefix + repr(value)
        else:
            out += prefix + text_value(value)
    return out


def _context_text(fields: Mapping[str, Any], context: Mapping[str, Any]) -> str:
    """`` key=value`` for the context's fields not in ``fields``, ``trace_id`` last."""
    out = ""
    keys_get = _KEYS.get
    trace_id = None
    for key, value in context.items():
        if key in fields:
            continue
        if key == "trace_id":
            trace_id = value
            continue
        prefix, secret = keys_get(key) or _key_entry(key)
        out += prefix + (MASK if secret else text_value(value))
    if trace_id is not None:
        out += " trace_id=" + text_value(trace_id)
    return out


def text_fields(fields: Mapping[str, Any], context: Mapping[str, Any]) -> str:
    """`` key=value`` for every field, then the context's fields not given, ``trace_id`` last."""
    out = _fields_one_by_one(fields)
    if context:
        out += _context_text(fields, context)
    return out


def _general_line(
    stamp: Timestamper, head: str, fields: Mapping[str, Any], context: Mapping[str, Any]
) -> bytes:
    """Any line, one value at a time (new shapes beyond the cap, unexpected value types)."""
    return (stamp() + head + text_fields(fields, context) + "\n").encode()


# How a value of each type is written in a template, ``@`` standing for its variable. The
# template checks the type first; any other type goes through text_value unchecked.
_SPELLINGS: Mapping[type, str] = {
    str: "{S(@) or R(@)}",
    int: "{@!s}",
    Decimal: "{@!s}",
    float: "{@!r}",
    bool: "{'true' if @ else 'false'}",
    type(None): "null",
}
_TEMPLATE_GLOBALS: Mapping[str, Any] = {
    "time_ns": time_ns,
    "D3": _DIGITS3,
    "S": _STRINGS.get,
    "R": _rendered_str,
    "T": text_value,
    "C": _context_text,
    "general": _general_line,
}


def _template(keys: tuple[str, ...], fields: Mapping[str, Any]) -> LineTemplate:
    """Compile the writer of lines with these field keys, for the value types of ``fields``.

    One f-string per shape: the keys are literal text, each value is spelled by its type
    (checked first; a call with other types takes the general path), and the timestamp is
    written as ``Timestamper`` does. This is where most of each call's time went with a
    ``%`` template, which is parsed again at every call.
    """
    if len(_TEMPLATES) >= _MAX_TEMPLATES:
        return _general_line
    namespace = dict(_TEMPLATE_GLOBALS)
    guards: list[str] = []
    pieces: list[str] = []
    for index, (key, value) in enumerate(zip(keys, fields.values(), strict=True)):
        prefix, secret = _KEYS.get(key) or _key_entry(key)
        # Spelled keys hold only [A-Za-z0-9_.] and MASK is "***": nothing to escape.
        if secret:
            pieces.append(prefix + MASK)
            continue
        name = f"v{index}"
        spelling = _SPELLINGS.get(type(value))
        if spelling is None:
            pieces.append(prefix + "{T(" + name + ")}")
            continue
        namespace[f"t{index}"] = type(value)
        guards.append(f"type({name}) is not t{index}")
        pieces.append(prefix + spelling.replace("@", name))
    body = ["def line(stamp, head, fields, context):"]
    if keys:
        body.append(f"    {', '.join(f'v{i}' for i in range(len(keys)))}, = fields.values()")
    if guards:
        body.append(f"    if {' or '.join(guards)}:")
        body.append("        return general(stamp, head, fields, context)")
    body += [
        "    now_us = time_ns() // 1000",
        "    cached = stamp.cached",
        "    if cached[0] != now_us // 1000:",
        "        cached = stamp.millisecond(now_us // 1000)",
        '    return f"{cached[1]}{D3[now_us % 1000]}Z{head}'
        + "".join(pieces)
        + "{C(fields, context) if context else ''}\\n\".encode()",
    ]
    # The source holds no caller text but the spelled keys ([A-Za-z0-9_.]) and MASK.
    exec(compile("\n".join(body), f"<execflow line {keys!r}>", "exec"), namespace)
    template: LineTemplate = namespace["line"]
    _TEMPLATES[keys] = template
    return template


def text_line(
    stamp: Timestamper, head: str, fields: Mapping[str, Any], context: Mapping[str, Any]
) -> bytes:
    """One encoded text line: timestamp, ``head`` (`` LEVEL logger [TAG]``), fields, context.

    The hot path of every event: the compiled template of the fields' keys (in call
    order) writes the whole line in one f-string.
    """
    keys = tuple(fields)
    return (_TEMPLATES.get(keys) or _template(keys, fields))(stamp, head, fields, context)


def _json_value(value: Any) -> Any:
    kind = type(value)
    if kind is str:
        return mask_url(value) if "://" in value else value
    if kind is int or kind is float or kind is bool or value is None:
        return value
    if kind is Decimal:
        return str(value)
    if isinstance(value, Mapping | list | tuple | set | frozenset):
        return _mask_nested(value)
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal | Enum | BaseException):
        return _stringify(value)
    return str(value)


# Elastic Common Schema: every JSON line says which ECS version its names follow and which
# service wrote it, and carries a ``message`` (what Kibana, Loki and a shipper's default
# pipeline show for a line). ECS's ``user`` is an object, so the account goes to ``user.id``;
# a field whose name is one of these fixed keys goes under ``labels.`` instead of
# overwriting it.
ECS_VERSION = "8.11.0"
SERVICE_NAME = "execflow"
_ECS_NAMES: Mapping[str, str] = {"user": "user.id"}
_ECS_FIXED = frozenset({"message", "ecs.version", "service.name"})


def ecs_message(tag: str, fields: Mapping[str, Any]) -> str:
    """The line's ``message``: its tag, and the error or the stdlib message when it has one."""
    text = fields.get("error", fields.get("msg"))
    if text is None:
        return tag
    return f"{tag}: {text if type(text) is str else _stringify(text)}"


def json_line(
    timestamp: str,
    level: str,
    logger: str,
    tag: str,
    fields: Mapping[str, Any],
    context: Mapping[str, Any],
) -> bytes:
    """One JSON object with ECS names, then ``\\n``; Decimals become strings."""
    obj: dict[str, Any] = {
        "@timestamp": timestamp,
        "log.level": level,
        "log.logger": logger,
        "event.action": tag,
        "message": _json_value(ecs_message(tag, fields)),
        "ecs.version": ECS_VERSION,
        "service.name": SERVICE_NAME,
    }
    trace_id = fields.get("trace_id", context.get("trace_id"))
    if trace_id is not None:
        obj["trace.id"] = _json_value(trace_id)
    for source in (fields, context):
        for key, value in source.items():
            if key == "trace_id" or (source is context and key in fields):
                continue
            prefix, secret = _KEYS.get(key) or _key_entry(key)
            name = _JSON_RENAME.get(key) or _ECS_NAMES.get(key) or prefix[1:-1]
            if name in _ECS_FIXED:
                name = f"labels.{name}"
            obj[name] = MASK if secret else _json_value(value)
    try:
        line = orjson.dumps(obj, default=_json_default)
    except (orjson.JSONEncodeError, TypeError):
        # Integers beyond 64 bits or odd str subclasses: fall back to strings, still one line.
        safe = {k: v if isinstance(v, str) else _stringify(v) for k, v in obj.items()}
        return json.dumps(safe, ensure_ascii=True).encode() + b"\n"
    if _EXTRA_ESCAPE_UTF8.search(line) is not None:
        line = _EXTRA_ESCAPE_UTF8.sub(lambda m: b"\\u%04x" % ord(m[0].decode()), line)
    return line + b"\n"
