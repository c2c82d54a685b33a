"""One background thread that owns every disk write of the process.

Callers append encoded lines to a per-file ``deque`` (thread-safe, no lock) and return.
The thread drains the queues every ``flush_interval_s``, as soon as a queue holds a
buffer's worth of lines, on ``flush()`` and at shutdown; ERROR lines wake it at once.
A queue that grows past its bound (the disk is slower than the callers) makes the caller
yield to the writer for as long as the writer makes progress (backpressure, no loss);
when the writer has made no progress for 200 ms (disk hung) the newest lines are dropped
and counted, without a second wait until the writer moves again. Memory stays bounded,
and a hung disk costs the caller one pause, not one per line.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from execflow.logs.failures import FailureReporter, WriterCounters
from execflow.logs.files import RotatingFile

__all__ = ["BackgroundWriter", "Sink"]

# A typical line is 150-250 bytes: turn the byte budget into a line count once.
_TYPICAL_LINE_BYTES = 200
_PATH_CHECK_S = 1.0
_STALL_S = 0.2
_OVERFLOW_WAIT_S = 0.001
_PRESSURE_STEP = 128


class Sink:
    """The caller's handle on one file: a queue of encoded lines.

    A producer calls ``BackgroundWriter.pressure`` once its queue reaches ``threshold``
    lines; pressure raises the threshold so the following calls skip it until the writer
    has drained the queue (or the queue nears its bound).
    """

    __slots__ = ("file", "queue", "threshold")

    def __init__(self, file: RotatingFile, threshold: int) -> None:
        self.file = file
        self.queue: deque[bytes] = deque()
        self.threshold = threshold


class BackgroundWriter:
    """Drains every sink's queue on its own thread."""

    def __init__(
        self,
        counters: WriterCounters,
        failures: FailureReporter,
        flush_interval_s: float = 0.2,
        buffer_bytes: int = 256 * 1024,
    ) -> None:
        self.counters = counters
        self.failures = failures
        self.flush_interval_s = flush_interval_s
        self.flush_lines = max(16, buffer_bytes // _TYPICAL_LINE_BYTES)
        self.max_lines = self.flush_lines * 2
        self.wake = threading.Event()
        self._sinks: list[Sink] = []
        self._ticks: list[Callable[[], None]] = []
        self._cond = threading.Condition()
        self._requested = 0
        self._completed = 0
        self._stopping = False
        self._stalled_at: int | None = None
        self._thread: threading.Thread | None = None

    def add(self, file: RotatingFile) -> Sink:
        """Register a file; its sink takes lines from any thread."""
        sink = Sink(file, self.flush_lines)
        with self._cond:
            self._sinks = [*self._sinks, sink]
        return sink

    def on_tick(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the writer thread about once a second (stats cadence)."""
        self._ticks = [*self._ticks, callback]

    def start(self) -> None:
        """Start the thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="execflow-log-writer", daemon=True
            )
            self._thread.start()

    # -- caller side ------------------------------------------------------------------------
    def pressure(self, sink: Sink) -> None:
        """Called by a producer whose queue reached a buffer's worth: wake, bound, drop."""
        if not self.wake.is_set():
            self.wake.set()
        queue = sink.queue
        backlog = len(queue)
        if backlog <= self.max_lines:
            # The writer is woken: let the next lines through without a call until the
            # queue grows by another step (or reaches its bound).
            sink.threshold = min(backlog + _PRESSURE_STEP, self.max_lines + 1)
            return
        # Over the bound: yield to the writer while it makes progress (backpressure); drop
        # only once it has made none for _STALL_S (disk hung, lock held elsewhere).
        if self._stalled_at is not None and self._stalled_at == self._progress():
            self._drop(queue)  # still stalled since the last timeout: no second wait
            return
        self._stalled_at = None
        seen = self._progress()
        stall_started = time.monotonic()
        while time.monotonic() - stall_started < _STALL_S:
            time.sleep(_OVERFLOW_WAIT_S)
            if len(queue) <= self.max_lines:
                return
            now_seen = self._progress()
            if now_seen != seen:
                seen = now_seen
                stall_started = time.monotonic()
        self._stalled_at = seen
        self._drop(queue)

    def _progress(self) -> int:
        counters = self.counters
        return counters.lines + counters.rotations + counters.write_failures

    def _drop(self, queue: deque[bytes]) -> None:
        try:
            queue.pop()
        except IndexError:
            return  # drained meanwhile
        self.counters.dropped += 1

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Block until everything queued before the call is written (tests, shutdown)."""
        if self._thread is None or not self._thread.is_alive():
            self._drain()
            return True
        with self._cond:
            self._requested += 1
            target = self._requested
            self.wake.set()
            return self._cond.wait_for(lambda: self._completed >= target, timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is queued, stop the thread, close the files."""
        thread = self._thread
        if thread is not None:
            self._stopping = True
            self.wake.set()
            thread.join(timeout_s)
            self._thread = None
        else:
            self._drain()
        for sink in self._sinks:
            sink.file.close()

    # -- writer thread ------------------------------------------------------------------------
    def _run(self) -> None:
        next_check = time.monotonic() + _PATH_CHECK_S
        while True:
            self.wake.wait(self.flush_interval_s)
            self.wake.clear()
            with self._cond:
                generation = self._requested
            self._drain()
            with self._cond:
                if generation > self._completed:
                    self._completed = generation
                    self._cond.notify_all()
            if self._stopping:
                self._drain()
                with self._cond:
                    self._completed = self._requested
                    self._cond.notify_all()
                return
            now = time.monotonic()
            if now >= next_check:
                next_check = now + _PATH_CHECK_S
                self._housekeeping()

    def _drain(self) -> None:
        for sink in self._sinks:
            queue = sink.queue
            count = len(queue)
            if not count:
                continue
            popleft = queue.popleft
            lines: list[bytes] = []
            append = lines.append
            try:
                for _ in range(count):
                    append(popleft())
            except IndexError:
                pass  # a producer dropped a line (overflow) after len()
            sink.threshold = self.flush_lines
            try:
                sink.file.write_lines(lines)
            except Exception as exc:  # noqa: BLE001 - the writer thread must survive anything
                self.failures.failed(str(sink.file.path), exc, lines_lost=len(lines))

    def _housekeeping(self) -> None:
        for sink in self._sinks:
            try:
                sink.file.check_path()
            except Exception as exc:  # noqa: BLE001 - the writer thread must survive anything
                self.failures.failed(str(sink.file.path), exc)
        for tick in self._ticks:
            try:
                tick()
            except Exception as exc:  # noqa: BLE001 - a stats bug must not stop the writes
                self.failures.failed("stats tick", exc)
