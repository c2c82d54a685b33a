"""Benchmark ``logs trace`` and ``logs stats`` against ``zgrep`` over generated logs.

Generates realistic provider logs (text and JSON lines; current, rotated and gzipped
files) in a temporary directory, times ``zgrep -h "order_id=ID"`` over every file, then
``trace_order`` and ``collect_stats`` (in-process, the code ``execflow logs trace`` /
``logs stats`` run), prints absolute times, the ratios and the peak RSS of the scans,
measured at a quarter of the size and at the full size (RSS must stay flat).

    python bench/logs_tools_bench.py                 # ~1 GB
    python bench/logs_tools_bench.py --size-mb 100   # quick run
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from execflow.logtools.stats import collect_stats
from execflow.logtools.trace import trace_order

ORDERS_PER_BLOCK = 400
# (file stem, format, share of the bytes, backups, gzipped backups from this generation)
LAYOUT = [
    ("dispatcher", "text", 0.22, 4, 2),
    ("worker_open", "text", 0.18, 4, 2),
    ("worker_close", "json", 0.16, 4, 2),
    ("worker_pending", "text", 0.08, 3, 2),
    ("worker_reject", "json", 0.06, 3, 1),
    ("orders_calculated", "json", 0.22, 4, 2),
    ("provider_errors", "text", 0.08, 3, 1),
]
TRACEBACK = (
    'Traceback (most recent call last):\n  File "worker.py", line 88, in apply\n'
    "KeyError: 'EURUSD'"
)


def _text(ts: str, level: str, logger: str, tag: str, fields: dict[str, object]) -> str:
    parts = [f"{ts} {level} {logger} [{tag}]"]
    for key, value in fields.items():
        text = str(value)
        if not text or any(c in text for c in ' "=\\\n\t'):
            text = json.dumps(text)
        parts.append(f"{key}={text}")
    return " ".join(parts)


def _json(ts: str, level: str, logger: str, tag: str, fields: dict[str, object]) -> str:
    doc: dict[str, object] = {
        "@timestamp": ts,
        "log.level": level,
        "log.logger": logger,
        "event.action": tag,
    }
    renames = {"trace_id": "trace.id", "error_type": "error.type", "error": "error.message"}
    for key, value in fields.items():
        doc[renames.get(key, key)] = value
    return json.dumps(doc, separators=(",", ":"))


# C901: one case per log file of the layout, each writing that component's lines
def _events(stem: str) -> list[tuple[str, str, str, dict[str, object]]]:  # noqa: C901
    """One block's events for a file: per order, the lines that component writes."""
    events: list[tuple[str, str, str, dict[str, object]]] = []
    worker = stem.replace("worker_", "")
    for i in range(ORDERS_PER_BLOCK):
        oid = f"@@@@{i:04d}"
        tid = f"tr@@@@{i:04d}ab12cd34"
        base: dict[str, object] = {"order_id": oid, "user": f"live:{i % 97}", "symbol": "EURUSD"}
        ms = f"{(i * 37) % 400 / 10 + 0.5:.1f}"
        if stem == "dispatcher":
            events.append(
                (
                    "INFO",
                    "provider.dispatcher",
                    "DISPATCH:RECEIVED",
                    {"lifecycle_id": f"lc-@@@@{i:04d}", "exec_id": f"ex{i}", "trace_id": tid},
                )
            )
            if i % 50 == 7:
                events.append(
                    (
                        "WARNING",
                        "provider.dispatcher",
                        "DISPATCH:DLQ",
                        {"reason": "unknown_lifecycle_id", "trace_id": tid},
                    )
                )
                continue
            events.append(
                (
                    "INFO",
                    "provider.dispatcher",
                    "DISPATCH:ROUTED",
                    {**base, "queue": "worker_open", "processing_time_ms": ms, "trace_id": tid},
                )
            )
        elif stem == "orders_calculated":
            events.append(
                (
                    "INFO",
                    "provider.worker.open",
                    "ORDER_OPEN_CALC",
                    {
                        **base,
                        "margin": "108.25",
                        "commission": "3.50",
                        "open_price": "1.08251",
                        "contract_size": "100000",
                        "leverage": 100,
                        "trace_id": tid,
                    },
                )
            )
        elif stem == "provider_errors":
            if i % 4 == 0:
                events.append(
                    (
                        "ERROR",
                        "provider.worker.open",
                        "OPEN:ERROR",
                        {
                            **base,
                            "error_type": "KeyError",
                            "error": "'EURUSD'",
                            "traceback": TRACEBACK,
                            "trace_id": tid,
                        },
                    )
                )
        else:
            tag = worker.upper()
            logger = f"provider.worker.{worker}"
            events.append(
                ("INFO", logger, f"{tag}:RECEIVED", {**base, "exec_id": f"ex{i}", "trace_id": tid})
            )
            events.append(
                ("INFO", logger, f"{tag}:PROCESSING", {**base, "state": "QUEUED", "trace_id": tid})
            )
            if i % 40 == 3:
                events.append(("INFO", logger, f"{tag}:SKIP:DUPLICATE", {**base, "trace_id": tid}))
            elif i % 60 == 5:
                events.append(
                    ("WARNING", logger, f"{tag}:PARKED", {**base, "attempt": 1, "trace_id": tid})
                )
            elif i % 100 == 9:
                events.append(
                    (
                        "ERROR",
                        logger,
                        f"{tag}:ERROR",
                        {**base, "error_type": "KeyError", "error": "'EURUSD'", "trace_id": tid},
                    )
                )
            else:
                events.append(
                    (
                        "INFO",
                        logger,
                        f"{tag}:SUCCESS",
                        {**base, "processing_time_ms": ms, "margin": "108.25", "trace_id": tid},
                    )
                )
        if i % 100 == 99:
            events.append(
                (
                    "INFO",
                    f"provider.{stem.replace('_', '.', 1)}",
                    "STATS",
                    {"component": stem, "instance": 1, "processed": i + 1},
                )
            )
    return events


def _block(stem: str, fmt: str) -> bytes:
    """A template block; ``@@@@`` marks the id prefix, ``%DAY%``/``%HM%`` the time."""
    render = _json if fmt == "json" else _text
    events = _events(stem)
    lines = []
    for n, (level, logger, tag, fields) in enumerate(events):
        sec = n * 60 // len(events)
        ts = f"2026-%DAY%T%HM%:{sec:02d}.{(n * 7919) % 1_000_000:06d}Z"
        lines.append(render(ts, level, logger, tag, fields))
    return ("\n".join(lines) + "\n").encode()


def generate(directory: Path, size_mb: int) -> tuple[str, int]:
    """Write the files; returns an order id present in the middle and the bytes written."""
    total = 0
    target_rep = None
    for stem, fmt, share, backups, gz_from in LAYOUT:
        template = _block(stem, fmt)
        reps = max(backups + 1, int(size_mb * 1024 * 1024 * share / len(template)))
        per_file = -(-reps // (backups + 1))
        rep = 0
        for gen in range(backups, -1, -1):
            name = f"{stem}.log" + (f".{gen}" if gen else "")
            path = directory / name
            with path.open("wb") as out:
                for _ in range(per_file):
                    if rep >= reps:
                        break
                    day, minute = divmod(rep, 1440)
                    block = template.replace(b"@@@@", b"%04d" % (rep % 10000))
                    block = block.replace(b"%DAY%", b"11-%02d" % (1 + day % 28))
                    block = block.replace(b"%HM%", b"%02d:%02d" % divmod(minute, 60))
                    out.write(block)
                    total += len(block)
                    rep += 1
            if gen >= gz_from:
                subprocess.run(["gzip", "-6", "-f", str(path)], check=True)
        target_rep = reps // 2 if target_rep is None else target_rep
    return f"{(target_rep or 0) % 10000:04d}0123", total


def _timed(label: str, func):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = func()
    elapsed = time.perf_counter() - start
    print(f"  {label:<28} {elapsed:8.2f} s")
    return elapsed, result


def _scan_in_child(
    directory: str, order_id: str, queue: multiprocessing.Queue[tuple[float, float]]
) -> None:
    """Run both tools in a fresh process and report its peak RSS (MiB, incl. its workers)."""
    trace_order(Path(directory), order_id)
    collect_stats(Path(directory))
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    queue.put((own / 1024, kids / 1024))


def peak_rss(directory: Path, order_id: str) -> tuple[float, float]:
    """Peak RSS of the scanning process and of its largest worker, in MiB."""
    ctx = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[tuple[float, float]] = ctx.Queue()
    proc = ctx.Process(target=_scan_in_child, args=(str(directory), order_id, queue))
    proc.start()
    own_mib, workers_mib = queue.get()
    proc.join()
    return own_mib, workers_mib


def run(size_mb: int, keep_rss_probe: bool = True) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="execflow-logbench-"))
    try:
        start = time.perf_counter()
        order_id, written = generate(tmp, size_mb)
        files = sorted(tmp.iterdir())
        on_disk = sum(f.stat().st_size for f in files)
        gz = sum(1 for f in files if f.name.endswith(".gz"))
        print(
            f"\n== {written / 1e6:.0f} MB of log lines ({on_disk / 1e6:.0f} MB on disk, "
            f"{len(files)} files, {gz} gzipped), generated in {time.perf_counter() - start:.1f} s"
        )
        # Warm the page cache so every tool reads from memory alike.
        subprocess.run(["cat", *map(str, files)], stdout=subprocess.DEVNULL, check=True)
        zgrep_s, out = _timed(
            "zgrep -h order_id=ID",
            lambda: subprocess.run(
                ["zgrep", "-h", f"order_id={order_id}", *map(str, files)],
                capture_output=True,
                check=False,
            ),
        )
        trace_s, traced = _timed("execflow logs trace ID", lambda: trace_order(tmp, order_id))
        stats_s, stats = _timed("execflow logs stats", lambda: collect_stats(tmp))
        processed = sum(s.processed for s in stats.components.values())
        zgrep_lines = out.stdout.count(b"\n")
        print(
            f"  zgrep lines {zgrep_lines}, trace lines {len(traced.records)}, "
            f"stats processed {processed}"
        )
        print(
            f"  ratio trace/zgrep {trace_s / zgrep_s:.2f}x   stats/zgrep {stats_s / zgrep_s:.2f}x"
        )
        if keep_rss_probe:
            own, workers = peak_rss(tmp, order_id)
            print(f"  peak RSS: main {own:.0f} MiB, largest worker {workers:.0f} MiB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="total size of the log lines")
    args = parser.parse_args()
    quarter = max(args.size_mb // 4, 8)
    run(quarter)
    run(args.size_mb)


if __name__ == "__main__":
    main()
