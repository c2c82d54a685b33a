"""The dependency lock (requirements/*.txt, ``make lock``) agrees with pyproject.toml.

``make install``, CI and the image install from the lock alone with ``--require-hashes``;
these tests fail when a dependency is added to pyproject.toml and the lock is not
regenerated, when a pin falls outside its pyproject range, or when the two lock files
(runtime for the image, dev for CI) disagree on a version.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "requirements" / "runtime.txt"
DEV = ROOT / "requirements" / "dev.txt"
_PIN = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;]+)\s*(;\s*(?P<marker>.+))?$"
)
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


@dataclass(frozen=True)
class Pin:
    """One locked requirement: ``name==version [; marker]`` and its sha256 hashes."""

    name: str
    version: str
    marker: str | None
    hashes: frozenset[str]


def read_lock(path: Path) -> dict[str, Pin]:
    """The pins of a pip requirements file written with hashes, by canonical name."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    pins: dict[str, Pin] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        hashes = frozenset(_HASH.findall(line))
        spec = _HASH.sub("", line).strip()
        match = _PIN.match(spec)
        assert match is not None, f"{path.name}: not an exact pin: {line!r}"
        name = canonicalize_name(match["name"])
        assert name not in pins, f"{path.name}: {name} pinned twice"
        pins[name] = Pin(name, match["version"], match["marker"], hashes)
    return pins


def _pyproject() -> dict[str, list[Requirement]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    groups = {"runtime": project["dependencies"], **project["optional-dependencies"]}
    return {group: [Requirement(line) for line in lines] for group, lines in groups.items()}


def _check(requirement: Requirement, lock: dict[str, Pin], lock_name: str) -> list[str]:
    pin = lock.get(canonicalize_name(requirement.name))
    if pin is None:
        return [f"{requirement} is not in {lock_name}: run make lock"]
    problems = []
    if not requirement.specifier.contains(pin.version, prereleases=True):
        problems.append(f"{lock_name} pins {pin.name}=={pin.version} outside {requirement}")
    if requirement.marker is not None and pin.marker is None:
        problems.append(f"{lock_name} installs {pin.name} everywhere; pyproject limits it")
    return problems


def test_the_lock_files_parse_into_pins_with_hashes() -> None:
    for path in (RUNTIME, DEV):
        pins = read_lock(path)
        assert len(pins) > 20, path
        assert [p.name for p in pins.values() if not p.hashes] == [], path
        header = path.read_text(encoding="utf-8").splitlines()[:2]
        assert header[1].strip() == "#    make lock", f"{path.name}: regenerate with make lock"


def test_every_runtime_dependency_is_pinned_in_both_locks() -> None:
    problems = []
    for requirement in _pyproject()["runtime"]:
        problems += _check(requirement, read_lock(RUNTIME), "requirements/runtime.txt")
        problems += _check(requirement, read_lock(DEV), "requirements/dev.txt")
    assert problems == []


@pytest.mark.parametrize("group", ["dev", "bench"])
def test_every_optional_dependency_is_pinned_in_the_dev_lock(group: str) -> None:
    requirements = _pyproject()[group]
    assert requirements
    problems = []
    for requirement in requirements:
        problems += _check(requirement, read_lock(DEV), "requirements/dev.txt")
    assert problems == []


def test_the_dev_lock_keeps_every_runtime_pin() -> None:
    """CI (dev lock) tests the versions and the very files the image (runtime lock) ships."""
    runtime, dev = read_lock(RUNTIME), read_lock(DEV)
    differ = [
        f"{name}: runtime {pin.version}, dev {dev[name].version if name in dev else 'absent'}"
        for name, pin in runtime.items()
        if name not in dev or dev[name].version != pin.version or dev[name].hashes != pin.hashes
    ]
    assert differ == []


def test_the_checker_sees_a_missing_or_stale_pin() -> None:
    lock = {"orjson": Pin("orjson", "3.8.0", None, frozenset({"0" * 64}))}
    assert _check(Requirement("orjson>=3.9"), lock, "x") == [
        "x pins orjson==3.8.0 outside orjson>=3.9"
    ]
    assert _check(Requirement("redis>=5"), lock, "x") == ["redis>=5 is not in x: run make lock"]
    marked = Requirement("orjson>=3; sys_platform == 'linux'")
    assert _check(marked, {"orjson": Pin("orjson", "3.9", None, frozenset())}, "x") == [
        "x installs orjson everywhere; pyproject limits it"
    ]


def test_make_installs_from_the_lock_with_hashes() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "pip install -q --require-hashes -r $(LOCK_DEV)" in makefile
    assert "pip install -q --no-deps -e ." in makefile
    assert "-e '.[" not in makefile  # nothing resolved outside the lock
