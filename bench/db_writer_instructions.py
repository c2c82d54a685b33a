"""Instructions per DB event through the db writer alone, counted by valgrind.

``instructions_per_report.py`` counts the whole embedded pipeline, where the db writer's
share moves with timing (batch timeouts, polls) by a few percent between runs. This
counts the db writer alone, which is deterministic: N DB events of a fill (the
``ORDER_OPENED`` payloads of the fill workload, with distinct ids and rising versions)
wait on ``db_updates`` of the in-memory bus; one db writer (SQLite, full logging) takes
them in full batches of ``--batch`` (default 100, the default ``db_batch_size``; a
distributed writer, fed as reports come, sees smaller ones) and the run ends when the
queue is settled. The process runs under ``valgrind --tool=cachegrind --cache-sim=no``
twice, once writing the events and once only building them; the difference divided by
N is one event, from the message's decode to the commit. ``--baseline-src`` counts another source
tree in the same run and prints the ratio.

    python bench/db_writer_instructions.py --events 1000
    python bench/db_writer_instructions.py --events 1000 --baseline-src /tmp/old/src
    python bench/db_writer_instructions.py --events 500 --batch 5 --baseline-src /tmp/old/src
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from _cachegrind import instructions  # bench/, first on sys.path: see its doc
from _trees import tree_env

_INNER = "EXECFLOW_DBW_INNER"
_BATCH = 100  # the default db_batch_size


def _payloads(workdir: Path) -> list[dict[str, Any]]:
    """The fill workload's ORDER_OPENED events, as stored (100 orders)."""
    import sqlite3

    import orjson

    from _workload import fill_pass  # bench/, first on sys.path: see its doc

    asyncio.run(fill_pass(workdir, 100, 600, fill=True))
    connection = sqlite3.connect(workdir / "execflow.db")
    try:
        found = connection.execute(
            "SELECT event_id, order_id, account_id, exec_id, kind, payload FROM order_events"
            " WHERE kind = 'ORDER_OPENED' ORDER BY seq"
        ).fetchall()
    finally:
        connection.close()
    keys = ("event_id", "order_id", "account_id", "exec_id", "kind")
    return [
        {**dict(zip(keys, row[:5], strict=True)), "payload": orjson.loads(row[5])} for row in found
    ]


async def _write(
    workdir: Path, templates: list[dict[str, Any]], count: int, write: bool, batch: int
) -> None:
    """Publish ``count`` DB events (built either way) and, with ``write``, run a db writer."""
    import orjson

    from execflow.domain.codec import effect_to_dict
    from execflow.domain.effects import DbEvent, EventKind
    from execflow.logs import setup_logging
    from execflow.pipeline.dbwriter import DbWriter, db_writer_spec
    from execflow.pipeline.runner import Runner
    from execflow.pipeline.services import open_services
    from execflow.settings import Settings

    bodies = []
    for n in range(count):
        template = templates[n % len(templates)]
        payload = orjson.loads(orjson.dumps(template["payload"]))
        rounds = n // len(templates)
        for snapshot in ("order", "account"):
            if isinstance(payload.get(snapshot), dict):
                payload[snapshot]["version"] += 1000 * rounds
        event = DbEvent(
            f"{template['event_id']}:{n}",
            EventKind(template["kind"]),
            template["account_id"],
            template["order_id"],
            template["exec_id"],
            payload,
        )
        bodies.append((orjson.dumps(effect_to_dict(event)), event.event_id))
    settings = Settings(
        log_dir=workdir / "logs",
        log_level="INFO",
        database_url=f"sqlite+aiosqlite:///{workdir / 'execflow.db'}",
        # Full batches only: under valgrind the default 50 ms would cut batches by how
        # fast the tree runs, and the count would move with the batch sizes.
        db_batch_size=batch,
        db_batch_timeout_s=600.0,
    )
    logs = await asyncio.to_thread(setup_logging, settings, "db_writer", bridge=False)
    try:
        async with open_services(settings, logs) as services:
            if not write:
                return
            queue = services.queues.db_updates
            for body, event_id in bodies:
                await services.bus.publish(queue, body, {}, event_id)
            writer = DbWriter(services)
            runner = Runner(services, db_writer_spec(services, writer))
            await runner.start()
            await services.bus.join(queue)  # type: ignore[attr-defined]
            await runner.stop()
            await writer.close()
    finally:
        await asyncio.to_thread(logs.close)


def _count(src: Path | None, events_file: Path, count: int, batch: int, write: bool) -> int:
    # a fixed hash seed: set and dict orders, and so the work, alike in every run
    env = tree_env(src, **{_INNER: "write" if write else "build", "PYTHONHASHSEED": "0"})
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, __file__, "--events", str(count), "--workdir", tmp]
        command += ["--events-file", str(events_file), "--batch", str(batch)]
        return instructions(command, env)


def _per_event(src: Path | None, events_file: Path, count: int, batch: int) -> float:
    written = _count(src, events_file, count, batch, True)
    return (written - _count(src, events_file, count, batch, False)) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=_BATCH, help="events per batch")
    parser.add_argument("--baseline-src", type=Path, default=None)
    parser.add_argument("--workdir", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--events-file", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.batch < 1 or args.events % args.batch:
        parser.error("--events must be a multiple of --batch")
    inner = os.environ.get(_INNER)
    import orjson

    if inner is not None:
        write = inner == "write"
        templates = orjson.loads(args.events_file.read_bytes())
        asyncio.run(_write(args.workdir, templates, args.events, write, args.batch))
        return
    with tempfile.TemporaryDirectory() as tmp:
        events_file = Path(tmp) / "events.json"
        workload = Path(tmp) / "workload"
        workload.mkdir()
        events_file.write_bytes(orjson.dumps(_payloads(workload)))
        current = _per_event(None, events_file, args.events, args.batch)
        shape = f"{args.events} events, batches of {args.batch}"
        print(f"this tree: {current / 1e3:.1f} k instructions per DB event ({shape})")
        if args.baseline_src is not None:
            base = _per_event(args.baseline_src.resolve(), events_file, args.events, args.batch)
            print(f"baseline:  {base / 1e3:.1f} k instructions per DB event ({args.baseline_src})")
            print(f"ratio this/baseline: {current / base:.3f}")


if __name__ == "__main__":
    main()
