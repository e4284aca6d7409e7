"""The capture writer's book-keeping, safe to read from any thread: a submitted row is sampled out,
dropped before it is queued, or accepted; an accepted row stays pending (its request id is what
:meth:`~housing_platform.adapters.capture.store.CaptureStore.record_feedback` asks about) until it is
settled (written, rejected by the database, or dropped), and a flush waits for that.

Admission: rows in memory (reserved for requests about to be answered, queued, or being written or
retried) never exceed the writer's bound. :meth:`RowLedger.admit` reserves room before a request is
answered, or refuses it (counted); rows submitted with a reservation are then always accepted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from housing_platform.adapters.capture.records import RequestScoped


@dataclass(frozen=True, slots=True)
class CaptureWriterStats:
    """A snapshot of a writer's counters (all counts are rows, cumulative since start)."""

    queue_depth: int
    buffered: int  # held in the retry buffer because the store was unreachable
    written: int
    dropped: int  # lost: submitted without admission past the bound, submitted after close, store down at close
    refused: int  # rows of requests refused by admit(): never answered, so not lost
    refused_requests: int
    reserved: int  # rows admitted for requests being answered, not yet submitted
    in_memory: int  # reserved, queued, being written or retried: what a kill -9 would lose
    store_reopened: int  # times the SQLite file was found deleted or replaced and opened again
    rejected: int  # refused by the database row by row (duplicate request id, invalid value)
    sampled_out: int
    failed_attempts: int  # write attempts that failed because the store was unreachable
    store_available: bool
    last_error: str | None


class RowLedger:
    """Counters and pending request ids of one writer, behind one lock.

    The counters are plain attributes, read without the lock for metrics (a stale value is fine).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._progress = threading.Condition(self._lock)
        self._pending_ids: set[str] = set()
        self.accepted = 0  # rows put on the queue
        self.reserved = 0  # rows admitted for requests not yet submitted
        self.queued = 0  # accepted rows still on the queue (not yet taken by the writer thread)
        self.refused = 0  # rows of requests refused by admit() (the request was not answered)
        self.refused_requests = 0
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

    @property
    def in_memory(self) -> int:
        """Rows reserved, queued, or taken by the writer thread and not yet settled."""
        return self.reserved + self.accepted - self.settled

    def admit(self, rows: int, bound: int, *, count_refusal: bool = True) -> bool:
        """Reserve room for ``rows``; False (counted as refused, if ``count_refusal``) if that would pass ``bound``.

        With nothing in memory a request is always admitted, however large, so it cannot starve.
        """
        with self._lock:
            in_memory = self.in_memory
            if in_memory and in_memory + rows > bound:
                if count_refusal:
                    self.refused += rows
                    self.refused_requests += 1
                return False
            self.reserved += rows
            return True

    def count_refused(self, rows: int) -> None:
        """A request refused after all (admit(count_refusal=False) failed and the spill could not take it)."""
        with self._lock:
            self.refused += rows
            self.refused_requests += 1

    def release(self, rows: int) -> None:
        """Give back a reservation whose rows will not be submitted."""
        with self._lock:
            self.reserved -= rows

    def enqueue(self, request_ids: Sequence[str], *, sampled_out: int, admitted: int, bound: int) -> int:
        """Accept ids before their rows are queued (so the writer never settles an unknown id).

        Rows with a reservation (``admitted`` > 0 releases it) are all accepted; otherwise only as many
        as fit under ``bound``, the rest dropped (counted). Returns how many were accepted.
        """
        with self._lock:
            self.reserved -= admitted
            self.sampled_out += sampled_out
            n = len(request_ids) if admitted else max(0, min(len(request_ids), bound - self.in_memory))
            self._pending_ids.update(request_ids if n == len(request_ids) else request_ids[:n])
            self.accepted += n
            self.queued += n
            self.dropped += len(request_ids) - n
        return n

    def taken(self, rows: int) -> None:
        """The writer thread took ``rows`` off the queue."""
        with self._lock:
            self.queued -= rows

    def settle(self, rows: Sequence[RequestScoped], *, written: bool, rejected: bool = False) -> None:
        """Accepted rows are done with: written, or else rejected (by the database) or dropped."""
        self.settle_ids([row.request_id for row in rows], written=written, rejected=rejected)

    def settle_ids(self, request_ids: Sequence[str], *, written: bool, rejected: bool = False) -> None:
        with self._progress:
            self._pending_ids.difference_update(request_ids)
            rows = request_ids
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
