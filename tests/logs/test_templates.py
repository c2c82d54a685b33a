"""Compiled line templates write exactly what the one-value-at-a-time path writes."""

from __future__ import annotations

import re
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from execflow.logs.formatting import Timestamper, _general_line, text_line

STAMP = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
HEAD = " INFO provider.worker.open [OPEN:SUCCESS]"

values = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["EURUSD", "live:6", "a b", 'q"x', "x\ny", "amqp://u:p@h/", "\u2028"]),
    st.integers(),
    st.floats(),
    st.decimals(),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),  # ints beyond 64 bits included
    st.dictionaries(st.sampled_from(["a", "token"]), st.text(max_size=3), max_size=2),
)
# A few keys, so shapes repeat with other value types (the template's type checks).
keys = st.sampled_from(["order_id", "user", "price", "api_key", "x.y", "9bad", "trace_id"])
contexts = st.sampled_from(
    [{}, {"trace_id": "t1"}, {"trace_id": "t 2", "user": "ctx", "instance": 2}]
)


def without_stamp(line: bytes) -> bytes:
    match = STAMP.match(line)
    assert match is not None, line
    return line[match.end() :]


@settings(max_examples=600, deadline=None)
@given(fields=st.dictionaries(keys, values, max_size=5), context=contexts)
def test_template_line_equals_the_general_line(
    fields: dict[str, Any], context: dict[str, Any]
) -> None:
    stamp = Timestamper()
    proxy = MappingProxyType(context)
    expected = _general_line(stamp, HEAD, fields, proxy)
    assert without_stamp(text_line(stamp, HEAD, fields, proxy)) == without_stamp(expected)
    # Twice: the second call runs the template compiled by the first (or by an earlier
    # example with the same keys and other types).
    assert without_stamp(text_line(stamp, HEAD, fields, proxy)) == without_stamp(expected)


def test_a_value_of_another_type_takes_the_general_path() -> None:
    stamp = Timestamper()
    first = text_line(stamp, HEAD, {"qa_n": 1, "qa_s": "x"}, {})
    second = text_line(stamp, HEAD, {"qa_n": True, "qa_s": 5}, {})
    assert first.endswith(b" qa_n=1 qa_s=x\n")
    assert second.endswith(b" qa_n=true qa_s=5\n")


def test_timestamper_truncates_to_the_microsecond_of_the_call() -> None:
    stamp = Timestamper()
    stamp.millisecond(1_700_000_000_123)
    assert stamp.cached == (1_700_000_000_123, "2023-11-14T22:13:20.123")
    line = text_line(stamp, HEAD, {"order_id": Decimal("1.5")}, {})
    assert STAMP.match(line) is not None


HOSTILE_KEYS = [
    'a}{__import__("os").system("exit 3")}',
    "x=1\nINFO forged",
    "'''",
    '"""',
    "{v0}",
    "\\",
    "key with spaces",
    "",
]


def test_a_hostile_key_becomes_spelled_text_never_code() -> None:
    """The one ``exec`` in ``src`` (templates) sees only keys spelled to [A-Za-z0-9_.]."""
    stamp = Timestamper()
    fields = dict.fromkeys(HOSTILE_KEYS, "v")
    line = text_line(stamp, HEAD, fields, {})
    again = text_line(stamp, HEAD, fields, {})  # the compiled template, second call
    assert without_stamp(line) == without_stamp(again)
    body = without_stamp(line).decode()
    assert body.count("\n") == 1 and body.endswith("\n")
    spelled = re.findall(r" ([^ =]+)=v", body[len(HEAD) :])
    assert len(spelled) == len(HOSTILE_KEYS)
    assert all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", key) for key in spelled), spelled
