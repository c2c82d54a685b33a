"""Parsing both line formats per docs/log-format.md."""

from __future__ import annotations

import gzip
from pathlib import Path

from execflow.logtools.files import discover, iter_blocks, iter_lines, parse_name
from execflow.logtools.record import decode_fields, parse_line


def test_text_line_with_bare_and_quoted_values() -> None:
    line = (
        b"2026-11-29T12:47:00.123456Z ERROR provider.worker.reject [REJECT:ERROR] order_id=31 "
        b'user=live:6 error="bad \\"x\\" = y" traceback="Traceback\\nKeyError: 1" trace_id=6f1c'
    )
    record = parse_line(line, "worker_reject.log")
    assert record is not None
    assert (record.ts, record.level, record.logger, record.tag) == (
        "2026-11-29T12:47:00.123456Z",
        "ERROR",
        "provider.worker.reject",
        "REJECT:ERROR",
    )
    assert record.component == "worker_reject"
    assert record.fields == {
        "order_id": "31",
        "user": "live:6",
        "error": 'bad "x" = y',
        "traceback": "Traceback\nKeyError: 1",
        "trace_id": "6f1c",
    }
    assert record.file == "worker_reject.log"


def test_json_line_maps_ecs_names() -> None:
    line = (
        b'{"@timestamp":"2026-11-29T12:47:00.123456Z","log.level":"INFO",'
        b'"log.logger":"provider.worker.open","event.action":"OPEN:SUCCESS","trace.id":"t1",'
        b'"order_id":"7","processing_time_ms":22.8,"error.type":"KeyError"}'
    )
    record = parse_line(line)
    assert record is not None
    assert record.tag == "OPEN:SUCCESS"
    assert record.fields == {
        "trace_id": "t1",
        "order_id": "7",
        "processing_time_ms": 22.8,
        "error_type": "KeyError",
    }
    assert record.get("processing_time_ms") == "22.8"


def test_non_log_lines_are_none() -> None:
    assert parse_line(b"") is None
    assert parse_line(b"garbage") is None
    assert parse_line(b"{not json") is None


def test_decode_fields_keeps_key_inside_quoted_value_as_value() -> None:
    assert decode_fields('msg="a order_id=9 b" order_id=1') == {
        "msg": "a order_id=9 b",
        "order_id": "1",
    }


def test_names_of_rotated_and_gzipped_files(tmp_path: Path) -> None:
    names = [
        "worker_open-2.log.3.gz",
        "dispatcher.log",
        "dispatcher.log.1",
        "x.txt",
        ".a.log.gz.tmp",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    found = {f.name: f for f in discover(tmp_path)}
    assert set(found) == {"worker_open-2.log.3.gz", "dispatcher.log", "dispatcher.log.1"}
    gz = found["worker_open-2.log.3.gz"]
    assert (gz.stem, gz.instance, gz.generation, gz.gzipped) == ("worker_open", 2, 3, True)
    assert parse_name(tmp_path / "provider_errors.log") is not None


def test_blocks_end_on_line_boundaries_in_plain_and_multi_member_gzip(tmp_path: Path) -> None:
    lines = [
        f"2026-11-29T12:47:00.{i:06d}Z INFO provider.x [A:B] n={i}".encode() for i in range(5000)
    ]
    plain = tmp_path / "intake.log"
    plain.write_bytes(b"\n".join(lines) + b"\n")
    packed = tmp_path / "intake.log.1.gz"
    half = len(lines) // 2
    # Two gzip members, as an appending compressor may leave.
    packed.write_bytes(
        gzip.compress(b"\n".join(lines[:half]) + b"\n")
        + gzip.compress(b"\n".join(lines[half:]) + b"\n")
    )
    for path in (plain, packed):
        blocks = list(iter_blocks(path, block_bytes=4096))
        assert len(blocks) > 10
        assert all(block.endswith(b"\n") for block in blocks)
        assert list(iter_lines(path, block_bytes=4096)) == lines


def test_gzip_inflates_in_bounded_blocks(tmp_path: Path) -> None:
    line = b"2026-11-29T12:00:00.000000Z INFO provider.x [A:B] n=1\n"
    data = line * 200_000  # compresses ~500x: must not come out in one piece
    packed = tmp_path / "x.log.2.gz"
    packed.write_bytes(gzip.compress(data) + gzip.compress(data))
    blocks = list(iter_blocks(packed, block_bytes=64 * 1024))
    assert max(len(b) for b in blocks) <= 64 * 1024 + len(line)
    assert b"".join(blocks) == data * 2
