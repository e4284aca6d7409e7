"""The capture writer: :meth:`CaptureWriter.submit` only puts a request's rows on an in-memory queue
(one item per request) and never blocks the request path; a background thread builds their records
(for PostgreSQL a builder thread builds and encodes them while the writer thread ``COPY`` writes the
previous batch: :mod:`.intake`), writes them to the store in batches (the bulk paths of :mod:`.bulk`),
keeps them in a retry buffer while the store is unreachable, drains the durable spill
(:mod:`.spill_drain`) when it has caught up, and :meth:`CaptureWriter.close` flushes everything at
shutdown. The rows in memory are
bounded: :meth:`CaptureWriter.admit` reserves room before a request is answered, or refuses it so
the server can answer 503 instead of dropping rows it has answered; rows submitted without a
reservation that do not fit are dropped and counted. Plain counters and a
:meth:`CaptureWriter.stats` snapshot are read by a Prometheus collector at scrape time, so the hot path
carries no metrics code.
"""

from __future__ import annotations

import atexit
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence

from housing_platform.adapters.capture.deferred import DeferredChunk
from housing_platform.adapters.capture.inserter import WARNING_INTERVAL_SECONDS, BatchInserter
from housing_platform.adapters.capture.intake import Intake
from housing_platform.adapters.capture.ledger import CaptureWriterStats, RowLedger
from housing_platform.adapters.capture.records import CaptureRecord, keep_sampled, sampled_ids, sampling_threshold
from housing_platform.adapters.capture.spill import SpillLog
from housing_platform.adapters.capture.spill_drain import SpillDrainer
from housing_platform.adapters.capture.store import CaptureStore

__all__ = ["CaptureWriter", "CaptureWriterStats"]

logger = logging.getLogger(__name__)

class CaptureWriter:
    """Writes capture records in the background; :meth:`submit` never blocks the caller.

    Rows flow: ``admit`` (reserve room) → ``submit`` → queue → batches of up to ``batch_size`` rows,
    collected for at most ``max_wait_seconds`` after the first → one bulk INSERT (or COPY) each.
    ``max_queue_rows`` bounds every row in memory: reserved, queued, being written, or waiting for a
    retry. If the store is unreachable, the batch moves to a retry buffer (``buffer_max_rows``) and is
    retried with exponential backoff (``retry_initial_seconds`` doubling to ``retry_max_seconds``);
    meanwhile queued rows move into the buffer while it has room. Admitted rows are never dropped
    while the buffer is at least ``max_queue_rows`` (only at close, if the store is still down). A batch the database refuses for another reason (a duplicate request id, say) is
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
        spill: SpillLog | None = None,
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
        self.max_queue_rows = max_queue_rows
        # One item per request in, built batches out; bounded by the ledger.
        self._intake = Intake(self._ledger, batch_size=batch_size, max_wait_seconds=max_wait_seconds, name=name,
                              encoder=store.batch_encoder())
        self._buffer: deque[CaptureRecord] = deque()  # touched by the writer thread only
        self._inserter = BatchInserter(store, self._ledger, retry_initial_seconds, retry_max_seconds)  # likewise
        self.spill = spill
        self._drainer = SpillDrainer(spill, store, batch_size) if spill is not None else None  # likewise
        self._closing = threading.Event()
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
        return self._ledger.queued

    @property
    def in_memory(self) -> int:
        """Rows reserved, queued, being written or waiting for a retry: what a ``kill -9`` would lose."""
        return self._ledger.in_memory

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    written = property(lambda self: self._ledger.written)
    dropped = property(lambda self: self._ledger.dropped)
    rejected = property(lambda self: self._ledger.rejected)
    sampled_out = property(lambda self: self._ledger.sampled_out)

    @property
    def failed_attempts(self) -> int:
        return self._inserter.failed_attempts

    @property
    def store_available(self) -> bool:
        """False while rows wait in the retry buffer or the last write attempt failed."""
        return self._inserter.last_error is None and not self._buffer

    closed = property(lambda self: self._closing.is_set())

    def stats(self) -> CaptureWriterStats:
        watch = self.store.file_watch
        return CaptureWriterStats(
            queue_depth=self.queue_depth,
            buffered=self.buffered,
            written=self._ledger.written,
            dropped=self._ledger.dropped,
            refused=self._ledger.refused,
            refused_requests=self._ledger.refused_requests,
            reserved=self._ledger.reserved,
            in_memory=self._ledger.in_memory,
            store_reopened=watch.reopened if watch is not None else 0,
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

    def admit(self, rows: int, *, count_refusal: bool = True) -> bool:
        """Reserve room for the rows of a request about to be answered; False if the bound is reached
        (counted as refused unless ``count_refusal`` is False: the caller may still spill them, else
        calls :meth:`count_refused`) or the writer is closed. Pass the reservation to
        ``submit*(admitted=rows)``, or give it back with :meth:`release`. Never blocks."""
        if self._closing.is_set():
            return False
        return self._ledger.admit(rows, self.max_queue_rows, count_refusal=count_refusal)

    def count_refused(self, rows: int) -> None:
        self._ledger.count_refused(rows)

    def release(self, rows: int) -> None:
        """Give back an :meth:`admit` reservation whose rows will not be submitted."""
        self._ledger.release(rows)

    def submit(self, records: Iterable[CaptureRecord] | CaptureRecord, *, admitted: int = 0) -> int:
        """Queue rows for writing without blocking; returns how many were queued.

        Rows sampled out are skipped. ``admitted``: the rows reserved by :meth:`admit` for them (all
        queued). Without a reservation, rows that do not fit under the bound (or arrive after
        :meth:`close`) are dropped and counted.
        """
        if isinstance(records, CaptureRecord):
            records = [records]
        elif not isinstance(records, list | tuple):
            records = list(records)
        kept = keep_sampled(records, self._threshold)
        ids = [record.request_id for record in kept]
        n = self._enqueue(ids, len(records) - len(kept), admitted)
        if n:
            self._intake.put(kept if n == len(kept) else kept[:n])
        return n

    def submit_deferred(
        self, request_ids: Sequence[str], build: Callable[[], Sequence[CaptureRecord]], *, admitted: int = 0
    ) -> int:
        """Like :meth:`submit`, but the records are built later, by the writer thread.

        ``build()`` must return the records of ``request_ids``. The caller pays only for queueing the
        ids; building (flags, conversions) happens while the caller serves the next request. A
        ``build`` that raises loses its rows, counted as ``rejected`` and logged.
        """
        kept = sampled_ids(request_ids, self._threshold)
        n = self._enqueue(kept, len(request_ids) - len(kept), admitted)
        if n:
            self._intake.put(DeferredChunk(kept[:n], build, sampled=n < len(request_ids)))
        return n

    def _enqueue(self, ids: Sequence[str], sampled_out: int, admitted: int) -> int:
        if self._closing.is_set():
            self._ledger.release(admitted)
            self._ledger.refuse(sampled_out=sampled_out, dropped=len(ids))
            return self._log_drop("submitted after close") if ids else 0
        n = self._ledger.enqueue(ids, sampled_out=sampled_out, admitted=admitted, bound=self.max_queue_rows)
        if n < len(ids):
            self._log_drop("capture bound reached (rows submitted without admission)")
        return n

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
        self._intake.close()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        finished = not self._thread.is_alive()
        if finished:
            # A submit that raced with close() may have queued rows after the thread's last look.
            self._drop(self._intake.drain(), "submitted during close")
        lost = ledger.dropped - dropped_before
        self._close_result = finished and lost == 0 and ledger.settled >= ledger.accepted
        self.store.unregister_writer(self)
        atexit.unregister(self._close_at_exit)
        if self.spill is not None:
            self.spill.close()  # what is left is drained at the next start
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
        self._intake.wake()

    # -- the writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                if self._buffer:
                    self._wait_for_retry()
                    if self._closing.is_set() and time.monotonic() >= self._close_deadline:
                        self._drop(list(self._buffer) + self._intake.drain(), "store unreachable at close")
                        self._buffer.clear()
                        return
                    self._retry_buffer()
                    continue
                self._drain_spill()
                batch = self._intake.take_batch(lambda: self._ledger.flush_waiters)
                if batch is None:
                    return
                if batch:
                    self._store_or_buffer(batch)
            except Exception:  # a bug here must not silently stop capturing for good
                logger.exception("capture writer: unexpected error; carrying on")
                time.sleep(0.1)

    def _drain_spill(self) -> None:
        """Spilled rows into the store while the writer has caught up: continuously while nothing waits,
        one batch per loop while the rows in memory are at most half the bound."""
        if self._drainer is None or self._buffer:
            return
        while self._ledger.in_memory <= self.max_queue_rows // 2 and self._drainer.step():
            if self._ledger.queued:
                return

    def _store_or_buffer(self, batch: list[CaptureRecord]) -> None:
        # A batch the builder encoded goes in whole (a slice would lose the encoding): it passes batch_size
        # by at most the rows the builder took in its last look at the queue.
        size = len(batch) if getattr(batch, "copy_body", None) is not None else self.batch_size
        for start in range(0, len(batch), size):
            chunk = batch if len(batch) <= size else batch[start : start + size]
            remainder = self._inserter.attempt(chunk, buffered=len(self._buffer))
            if remainder:
                remainder = remainder + batch[start + size :]
                room = self.buffer_max_rows - len(self._buffer)
                self._buffer.extend(remainder[:room])
                self._drop(remainder[room:], "retry buffer full")
                return

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
            self._buffer.extend(self._intake.drain(room))

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

    def _log_drop(self, why: str) -> int:  # returns 0: the rows queued
        now = time.monotonic()
        if now - self._last_drop_log >= WARNING_INTERVAL_SECONDS:
            self._last_drop_log = now
            logger.warning("capture writer dropping rows (%s); %d dropped so far", why, self._ledger.dropped)
        return 0
