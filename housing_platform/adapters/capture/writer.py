"""The capture writer: :meth:`CaptureWriter.submit` only puts rows on a bounded in-memory queue and
never blocks the request path; a background thread writes them to the store in batches, keeps them in
a bounded retry buffer while the store is unreachable, drops and counts what fits nowhere, and
:meth:`CaptureWriter.close` flushes everything at shutdown. Plain counters and a
:meth:`CaptureWriter.stats` snapshot are read by a Prometheus collector at scrape time, so the hot path
carries no metrics code.
"""

from __future__ import annotations

import atexit
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from housing_platform.adapters.capture.deferred import DeferredRow, deferred_rows, materialize
from housing_platform.adapters.capture.inserter import WARNING_INTERVAL_SECONDS, BatchInserter
from housing_platform.adapters.capture.ledger import RowLedger
from housing_platform.adapters.capture.records import CaptureRecord, keep_sampled, sampling_threshold
from housing_platform.adapters.capture.store import CaptureStore

logger = logging.getLogger(__name__)

_WAKE = object()  # put on the queue by flush()/close() so a waiting writer thread looks up at once


@dataclass(frozen=True, slots=True)
class CaptureWriterStats:
    """A snapshot of a writer's counters (all counts are rows, cumulative since start)."""

    queue_depth: int
    buffered: int  # held in the retry buffer because the store was unreachable
    written: int
    dropped: int  # lost: queue full, retry buffer full, submitted after close, or store down at close
    rejected: int  # refused by the database row by row (duplicate request id, invalid value)
    sampled_out: int
    failed_attempts: int  # write attempts that failed because the store was unreachable
    store_available: bool
    last_error: str | None


class CaptureWriter:
    """Writes capture records in the background; :meth:`submit` never blocks the caller.

    Rows flow: ``submit`` → bounded queue (``max_queue_rows``) → batches of up to ``batch_size``
    rows, collected for at most ``max_wait_seconds`` after the first → one multi-row INSERT each.
    If the store is unreachable, the batch moves to a retry buffer (``buffer_max_rows``) and is
    retried with exponential backoff (``retry_initial_seconds`` doubling to ``retry_max_seconds``);
    meanwhile queued rows move into the buffer while it has room. Rows that fit nowhere are dropped
    and counted. A batch the database refuses for another reason (a duplicate request id, say) is
    retried row by row so that only the bad rows are lost (counted as ``rejected``).

    ``sample_percent`` keeps that share of rows, chosen by
    :func:`~housing_platform.adapters.capture.records.is_sampled` on the request id; rows sampled
    out are counted in ``sampled_out``, not ``dropped``.

    Call :meth:`close` on shutdown. If the process exits without it, an ``atexit`` hook closes the
    writer with ``exit_flush_seconds`` (a SIGTERM only runs it if the process handles the signal,
    as uvicorn does).
    """

    def __init__(
        self,
        store: CaptureStore,
        *,
        max_queue_rows: int = 10_000,
        batch_size: int = 500,
        max_wait_seconds: float = 0.05,
        buffer_max_rows: int = 100_000,
        retry_initial_seconds: float = 0.1,
        retry_max_seconds: float = 5.0,
        sample_percent: float = 100.0,
        exit_flush_seconds: float = 5.0,
        name: str = "capture-writer",
    ):
        if max_queue_rows < 1 or batch_size < 1 or buffer_max_rows < 0:
            raise ValueError("max_queue_rows and batch_size must be >= 1, buffer_max_rows >= 0")
        if max_wait_seconds < 0 or retry_initial_seconds <= 0 or retry_max_seconds < retry_initial_seconds:
            raise ValueError("need max_wait_seconds >= 0 and 0 < retry_initial_seconds <= retry_max_seconds")
        self.store = store
        self.batch_size = batch_size
        self.max_wait_seconds = max_wait_seconds
        self.buffer_max_rows = buffer_max_rows
        self.retry_initial_seconds = retry_initial_seconds
        self.retry_max_seconds = retry_max_seconds
        self.sample_percent = sample_percent
        self._threshold = sampling_threshold(sample_percent)

        self._ledger = RowLedger()
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue_rows)
        self._buffer: deque[CaptureRecord] = deque()  # touched by the writer thread only
        self._inserter = BatchInserter(store, self._ledger, retry_initial_seconds, retry_max_seconds)  # likewise
        self._closing = threading.Event()
        self._nudged = threading.Event()  # set by flush()/close(): stop collecting, write now
        self._close_deadline = math.inf
        self._close_result: bool | None = None
        self._last_drop_log = -math.inf

        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        store.register_writer(self)
        self._exit_flush_seconds = exit_flush_seconds
        if exit_flush_seconds > 0:
            atexit.register(self._close_at_exit)
        self._thread.start()

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- counters ----------------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def written(self) -> int:
        return self._ledger.written

    @property
    def dropped(self) -> int:
        return self._ledger.dropped

    @property
    def rejected(self) -> int:
        return self._ledger.rejected

    @property
    def sampled_out(self) -> int:
        return self._ledger.sampled_out

    @property
    def failed_attempts(self) -> int:
        return self._inserter.failed_attempts

    @property
    def store_available(self) -> bool:
        """False while rows wait in the retry buffer or the last write attempt failed."""
        return self._inserter.last_error is None and not self._buffer

    @property
    def closed(self) -> bool:
        return self._closing.is_set()

    def stats(self) -> CaptureWriterStats:
        return CaptureWriterStats(
            queue_depth=self.queue_depth,
            buffered=self.buffered,
            written=self._ledger.written,
            dropped=self._ledger.dropped,
            rejected=self._ledger.rejected,
            sampled_out=self._ledger.sampled_out,
            failed_attempts=self._inserter.failed_attempts,
            store_available=self.store_available,
            last_error=self._inserter.last_error,
        )

    def pending_among(self, request_ids: Iterable[str]) -> set[str]:
        """Which of these request ids are accepted but not yet written (or given up on)."""
        return self._ledger.pending_among(request_ids)

    # -- the request path --------------------------------------------------------------------

    def submit(self, records: Iterable[CaptureRecord] | CaptureRecord) -> int:
        """Queue rows for writing without blocking; returns how many were queued.

        Rows sampled out are skipped; rows that do not fit in the queue (or arrive after
        :meth:`close`) are dropped and counted.
        """
        if isinstance(records, CaptureRecord):
            records = (records,)
        elif not isinstance(records, list | tuple):
            records = list(records)
        return self._enqueue(records)

    def submit_deferred(self, request_ids: Sequence[str], build: Callable[[], Sequence[CaptureRecord]]) -> int:
        """Like :meth:`submit`, but the records are built later, by the writer thread.

        ``build()`` must return the records of ``request_ids``, in that order. The caller pays only
        for queueing the ids; building (flags, conversions) happens while the caller serves the next
        request. A ``build`` that raises loses its rows, counted as ``rejected`` and logged.
        """
        return self._enqueue(deferred_rows(request_ids, build))

    def _enqueue(self, records: Sequence[CaptureRecord | DeferredRow]) -> int:
        kept = keep_sampled(records, self._threshold)
        sampled_out = len(records) - len(kept)
        if self._closing.is_set():
            self._ledger.refuse(sampled_out=sampled_out, dropped=len(kept))
            if kept:
                self._log_drop("submitted after close")
            return 0

        ids = [record.request_id for record in kept]
        self._ledger.reserve(ids, sampled_out=sampled_out)
        queued = 0
        put = self._queue.put_nowait
        try:
            for record in kept:
                put(record)
                queued += 1
        except queue.Full:
            pass
        if self._ledger.accept(ids, queued):
            self._log_drop("queue full")
        return queued

    # -- flushing and shutdown ---------------------------------------------------------------

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every row accepted before this call is settled (written, rejected or dropped).

        Returns False on timeout, e.g. while the store is unreachable.
        """
        deadline = time.monotonic() + timeout
        with self._ledger.flushing() as target:
            self._wake()
            return self._ledger.wait_settled(target, deadline, self._thread.is_alive)

    def close(self, timeout: float = 10.0) -> bool:
        """Stop accepting rows, write everything queued or buffered, and stop the thread.

        Returns True when every accepted row was settled and none had to be dropped for lack of
        time (the store being down until ``timeout``). Idempotent; later calls return the same.
        """
        if self._close_result is not None:
            return self._close_result
        deadline = time.monotonic() + timeout
        ledger = self._ledger
        dropped_before = ledger.dropped
        # The thread gives up a little before we stop waiting for it, so that its last act (counting
        # what it could not write) happens while we still wait.
        self._close_deadline = deadline - min(0.25, timeout / 5)
        self._inserter.retry_now()  # one immediate attempt if the store was down
        self._closing.set()
        self._wake()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        finished = not self._thread.is_alive()
        if finished:
            # A submit that raced with close() may have queued rows after the thread's last look.
            self._drop(self._drain_queue(math.inf), "submitted during close")
        lost = ledger.dropped - dropped_before
        self._close_result = finished and lost == 0 and ledger.settled >= ledger.accepted
        self.store.unregister_writer(self)
        atexit.unregister(self._close_at_exit)
        unsettled = ledger.accepted - ledger.settled
        log = logger.info if self._close_result else logger.warning
        log(
            "capture writer closed: %d written, %d dropped (%d during close), %d rejected, %d sampled out%s",
            ledger.written,
            ledger.dropped,
            lost,
            ledger.rejected,
            ledger.sampled_out,
            "" if finished else f"; thread still busy after {timeout:g} s, {unsettled} rows unsettled",
        )
        return self._close_result

    def _close_at_exit(self) -> None:
        self.close(self._exit_flush_seconds)

    def _wake(self) -> None:
        self._nudged.set()
        try:
            self._queue.put_nowait(_WAKE)
        except queue.Full:
            pass  # a full queue means the thread is not waiting for rows anyway

    # -- the writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                if self._buffer:
                    self._wait_for_retry()
                    if self._closing.is_set() and time.monotonic() >= self._close_deadline:
                        self._drop(list(self._buffer) + self._drain_queue(math.inf), "store unreachable at close")
                        self._buffer.clear()
                        return
                    self._retry_buffer()
                    continue
                batch = self._take_batch()
                if batch is None:
                    return
                if batch:
                    self._store_or_buffer(batch)
            except Exception:  # a bug here must not silently stop capturing for good
                logger.exception("capture writer: unexpected error; carrying on")
                time.sleep(0.1)

    def _take_batch(self) -> list[CaptureRecord] | None:
        """Up to batch_size rows; [] when idle; None once closing and the queue is empty."""
        closing = self._closing.is_set()
        try:
            first = self._queue.get_nowait() if closing else self._queue.get(timeout=0.5)
        except queue.Empty:
            return None if closing else []
        batch = [] if first is _WAKE else [first]
        deadline = time.monotonic() + self.max_wait_seconds
        while len(batch) < self.batch_size:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                # Someone waits for these rows: write what we have instead of waiting for more.
                if self._closing.is_set() or self._ledger.flush_waiters or not batch:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                # Sleep rather than block on the queue: a blocked get() would wake this thread, and
                # take the GIL from the event loop, for every single row a request submits.
                self._nudged.wait(remaining)
                self._nudged.clear()
                continue
            if item is not _WAKE:
                batch.append(item)
        return self._materialized(batch)

    def _drain_queue(self, limit: float) -> list[CaptureRecord]:
        rows: list[CaptureRecord] = []
        while len(rows) < limit:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _WAKE:
                rows.append(item)
        return self._materialized(rows)

    def _materialized(self, items: list) -> list[CaptureRecord]:
        """Queue items as records: deferred rows are built here, in the writer thread."""
        records, failed = materialize(items)
        if failed:
            self._ledger.settle(failed, written=False, rejected=True)
        return records

    def _store_or_buffer(self, batch: list[CaptureRecord]) -> None:
        remainder = self._inserter.attempt(batch, buffered=len(self._buffer))
        if remainder:
            room = self.buffer_max_rows - len(self._buffer)
            self._buffer.extend(remainder[:room])
            self._drop(remainder[room:], "retry buffer full")

    def _wait_for_retry(self) -> None:
        """Sleep until the next retry, moving queued rows into the buffer while it has room."""
        while True:
            target = self._inserter.next_retry
            if self._closing.is_set():
                target = min(target, self._close_deadline)
            remaining = target - time.monotonic()
            self._absorb_queue()
            if remaining <= 0:
                return
            time.sleep(min(remaining, 0.02))

    def _absorb_queue(self) -> None:
        room = self.buffer_max_rows - len(self._buffer)
        if room > 0:
            self._buffer.extend(self._drain_queue(room))

    def _retry_buffer(self) -> None:
        while self._buffer:
            self._absorb_queue()
            chunk = [self._buffer.popleft() for _ in range(min(self.batch_size, len(self._buffer)))]
            remainder = self._inserter.attempt(chunk, buffered=len(self._buffer))
            if remainder:
                self._buffer.extendleft(reversed(remainder))
                return

    def _drop(self, rows: list[CaptureRecord], why: str) -> None:
        if rows:
            self._ledger.settle(rows, written=False)
            self._log_drop(why)

    def _log_drop(self, why: str) -> None:
        now = time.monotonic()
        if now - self._last_drop_log >= WARNING_INTERVAL_SECONDS:
            self._last_drop_log = now
            logger.warning("capture writer dropping rows (%s); %d dropped so far", why, self._ledger.dropped)
