"""``frozen.replace`` returns what ``dataclasses.replace`` returns, and falls back to it."""

from __future__ import annotations

import dataclasses
from dataclasses import InitVar, dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from execflow.domain import frozen
from execflow.domain.models import Account, Leg, Order

from .strategies import accounts, orders

_ORDER_FIELDS = [f.name for f in dataclasses.fields(Order)]


def _same(a: Any, b: Any) -> None:
    assert type(a) is type(b)
    for f in dataclasses.fields(a):
        assert getattr(a, f.name) is getattr(b, f.name), f.name
    assert a == b


@given(orders, orders, st.lists(st.sampled_from(_ORDER_FIELDS), unique=True))
def test_an_order_copy_is_dataclasses_replace(order: Order, other: Order, names: list[str]) -> None:
    changes = {name: getattr(other, name) for name in names}
    copy = frozen.replace(order, **changes)
    _same(copy, dataclasses.replace(order, **changes))
    assert copy is not order
    with pytest.raises(dataclasses.FrozenInstanceError):
        copy.status = other.status  # type: ignore[misc]


@given(accounts, accounts)
def test_an_account_copy_is_dataclasses_replace(account: Account, other: Account) -> None:
    changes: dict[str, Any] = {"positions": other.positions, "version": other.version + 1}
    _same(frozen.replace(account, **changes), dataclasses.replace(account, **changes))
    _same(frozen.replace(account), dataclasses.replace(account))


def test_an_unknown_field_is_a_type_error_and_nothing_else_changes() -> None:
    leg = Leg(price=None, sequence=3)
    with pytest.raises(TypeError, match="no field 'nope'"):
        frozen.replace(leg, nope=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        frozen.replace(object(), x=1)  # type: ignore[type-var]  # not a dataclass: as before


@dataclass(frozen=True, slots=True)
class _Checked:
    a: int
    b: int = 0

    def __post_init__(self) -> None:
        if self.b < 0:
            raise ValueError("b < 0")


@dataclass(frozen=True)
class _WithInitVar:
    a: int
    b: int = 0
    scale: InitVar[int] = 1


@dataclass(frozen=True, slots=True)
class _Derived:
    a: int
    b: int = field(init=False, default=0)


def test_classes_whose_init_does_more_take_dataclasses_replace() -> None:
    with pytest.raises(ValueError, match="b < 0"):
        frozen.replace(_Checked(1), b=-1)  # __post_init__ still runs
    # an InitVar goes to __init__, as before
    assert frozen.replace(_WithInitVar(1), b=2) == dataclasses.replace(_WithInitVar(1), b=2)
    with pytest.raises(ValueError):
        frozen.replace(_Derived(1), b=2)  # init=False: refused, as before
    assert frozen.replace(_Derived(1), a=2) == _Derived(2)
    assert frozen._SHAPES[_Checked] is None
    assert frozen._SHAPES[_WithInitVar] is None
    assert frozen._SHAPES[_Derived] is None
    assert frozen._SHAPES[Leg] is not None
