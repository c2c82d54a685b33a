"""``replace`` for the domain's dataclasses without a call to their generated ``__init__``.

A transition copies its ``Order`` (40 fields) and ``Account`` a few times with a field or
two changed. ``dataclasses.replace`` walks the fields in Python to collect every value as
a keyword, then the frozen class's ``__init__`` sets each one through
``object.__setattr__``, again in Python: the six copies of a fill report cost more than
the money maths. ``replace`` here does the same in C: the values by one ``attrgetter``,
the changes put in, each slot set by ``object.__setattr__`` through ``map``. The result
is the object ``dataclasses.replace`` returns (same class, same field values), for any
dataclass whose fields are all ``__init__`` parameters and which has no
``__post_init__`` and no ``__new__`` of its own; any other goes to
``dataclasses.replace``.

To mypy ``replace`` is ``dataclasses.replace`` itself, so its dataclass plugin keeps
checking every call's field names and types.
"""

from __future__ import annotations

import dataclasses
import operator
from collections import deque
from collections.abc import Callable
from itertools import repeat
from typing import TYPE_CHECKING, Any, TypeVar

__all__ = ["replace"]

_T = TypeVar("_T")
_SET = object.__setattr__


@dataclasses.dataclass(frozen=True, slots=True)
class _Shape:
    """A class's fields: their names, each one's position, and all values at once."""

    names: tuple[str, ...]
    index: dict[str, int]
    values: Callable[[Any], tuple[Any, ...]]


_SHAPES: dict[type, _Shape | None] = {}


def _shape(cls: type) -> _Shape | None:
    """The class's shape, or None when only ``dataclasses.replace`` copies it right."""
    shape = None
    if dataclasses.is_dataclass(cls) and cls.__new__ is object.__new__:
        fields = dataclasses.fields(cls)
        plain = all(f.init for f in fields) and not hasattr(cls, "__post_init__")
        # every __dataclass_fields__ entry a field: no InitVar (a ClassVar is no field either)
        if plain and len(fields) > 1 and len(fields) == len(_init_parameters(cls)):
            names = tuple(f.name for f in fields)
            index = {name: at for at, name in enumerate(names)}
            shape = _Shape(names, index, operator.attrgetter(*names))
    _SHAPES[cls] = shape
    return shape


def _init_parameters(cls: type) -> tuple[str, ...]:
    code = cls.__init__.__code__  # type: ignore[misc]
    return tuple(code.co_varnames[1 : code.co_argcount + code.co_kwonlyargcount])


def _replace(obj: _T, /, **changes: Any) -> _T:
    """A copy of the dataclass instance ``obj`` with ``changes`` (``dataclasses.replace``)."""
    cls = obj.__class__
    try:
        shape = _SHAPES[cls]
    except KeyError:
        shape = _shape(cls)
    if shape is None:
        return dataclasses.replace(obj, **changes)  # type: ignore[type-var]
    values = list(shape.values(obj))
    index = shape.index
    for name, value in changes.items():
        at = index.get(name)
        if at is None:
            raise TypeError(f"{cls.__name__} has no field {name!r}")
        values[at] = value
    new: _T = object.__new__(cls)
    deque(map(_SET, repeat(new), shape.names, values), maxlen=0)
    return new


if TYPE_CHECKING:
    from dataclasses import replace as replace
else:
    replace = _replace
