"""Log directories written once per session by the real writer, in both formats."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.logtools.pipeline_logs import Written, write_pipeline_logs


@pytest.fixture(scope="session")
def text_logs(tmp_path_factory: pytest.TempPathFactory) -> Written:
    """Text-format logs with rotated and gzipped backups."""
    return write_pipeline_logs(tmp_path_factory.mktemp("text-logs"), fmt="text")


@pytest.fixture(scope="session")
def json_logs(tmp_path_factory: pytest.TempPathFactory) -> Written:
    """JSON-lines logs with rotated and gzipped backups."""
    return write_pipeline_logs(tmp_path_factory.mktemp("json-logs"), fmt="json")


@pytest.fixture(scope="session")
def mixed_logs(tmp_path_factory: pytest.TempPathFactory) -> Written:
    """One directory: instance 1 writing text, instance 2 writing JSON, other orders."""
    directory = tmp_path_factory.mktemp("mixed-logs")
    first = write_pipeline_logs(directory, fmt="text", orders=60)
    second = write_pipeline_logs(directory, fmt="json", orders=60, instance=2, first=5000)
    first.orders.extend(second.orders)
    first.trace_ids.update(second.trace_ids)
    first.failures += second.failures
    return first


@pytest.fixture(params=["text", "json", "mixed"])
def logs(request: pytest.FixtureRequest) -> Written:
    """Each of the three directories in turn."""
    written: Written = request.getfixturevalue(f"{request.param}_logs")
    return written


def files_of(directory: Path) -> list[str]:
    """Names of the files in ``directory``."""
    return sorted(p.name for p in directory.iterdir())
