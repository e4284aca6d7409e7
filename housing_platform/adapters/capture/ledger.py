"""The capture writer's book-keeping, safe to read from any thread: a submitted row is sampled out,
dropped before it is queued, or accepted; an accepted row stays pending (its request id is what
:meth:`~housing_platform.adapters.capture.store.CaptureStore.record_feedback` asks about) until it is
settled (written, rejected by the database, or dropped), and a flush waits for that.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

from housing_platform.adapters.capture.records import RequestScoped


class RowLedger:
    """Counters and pending request ids of one writer, behind one lock.

    The counters are plain attributes, read without the lock for metrics (a stale value is fine).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._progress = threading.Condition(self._lock)
        self._pending_ids: set[str] = set()
        self.accepted = 0  # rows put on the queue
        self.settled = 0  # accepted rows written, rejected or dropped
        self.written = 0
        self.dropped = 0
        self.rejected = 0
        self.sampled_out = 0
        self.flush_waiters = 0  # flush() calls in progress: the writer thread stops batching for them

    def refuse(self, *, sampled_out: int, dropped: int) -> None:
        """Rows submitted after close: none accepted."""
        with self._lock:
            self.sampled_out += sampled_out
            self.dropped += dropped

    def reserve(self, request_ids: Sequence[str], *, sampled_out: int) -> None:
        """Mark ids pending *before* their rows are queued, so the writer never settles an unknown id."""
        with self._lock:
            self._pending_ids.update(request_ids)
            self.sampled_out += sampled_out

    def accept(self, request_ids: Sequence[str], queued: int) -> int:
        """The first ``queued`` of the reserved ids made it onto the queue; the rest are dropped.

        Returns how many were dropped.
        """
        overflow = len(request_ids) - queued
        with self._lock:
            self.accepted += queued
            if overflow:
                self._pending_ids.difference_update(request_ids[queued:])
                self.dropped += overflow
        return overflow

    def settle(self, rows: Sequence[RequestScoped], *, written: bool, rejected: bool = False) -> None:
        """Accepted rows are done with: written, or else rejected (by the database) or dropped."""
        with self._progress:
            self._pending_ids.difference_update(row.request_id for row in rows)
            self.settled += len(rows)
            if written:
                self.written += len(rows)
            elif rejected:
                self.rejected += len(rows)
            else:
                self.dropped += len(rows)
            self._progress.notify_all()

    def pending_among(self, request_ids: Iterable[str]) -> set[str]:
        with self._lock:
            return self._pending_ids.intersection(request_ids)

    @contextmanager
    def flushing(self) -> Iterator[int]:
        """Count a flush in progress while the block runs; yields the accepted count to wait for."""
        with self._lock:
            target = self.accepted
            self.flush_waiters += 1
        try:
            yield target
        finally:
            with self._lock:
                self.flush_waiters -= 1

    def wait_settled(self, target: int, deadline: float, alive: Callable[[], bool]) -> bool:
        """Wait until ``target`` rows are settled; False at ``deadline`` (monotonic) or once not ``alive()``."""
        with self._progress:
            while self.settled < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not alive():
                    return False
                self._progress.wait(min(remaining, 0.1))
            return True
