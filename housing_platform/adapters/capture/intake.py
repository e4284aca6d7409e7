"""The capture writer's intake: request items in (from the request path, never blocking), batches of
built records out (to the writer thread). Between the two, a builder thread turns each item into
records — a :class:`~housing_platform.adapters.capture.deferred.DeferredChunk` is built here — and,
for PostgreSQL, encodes their binary ``COPY`` rows, so that building and encoding one batch overlap
writing the previous one: the database's work (SQLite's ``step``,
PostgreSQL's ``COPY`` and commit) runs without the GIL, and with one thread doing both, building and
inserting added up (measured by ``benchmarks/capture.py``).

Only with a store that encodes ahead (PostgreSQL's binary ``COPY``): its database work is one long
GIL-free wait per batch, in another process. SQLite's ``executemany`` releases and retakes the GIL
for every row, so a second Python thread made each row wait for the GIL (measured: 7 → 9–11 CPU µs
per row, fewer rows/s); without an encoder the writer thread builds each batch itself, as before.

The builder never blocks on its input queue: a blocked ``get()`` would wake it, and take the GIL from
the server's event loop, for every request submitted. It looks at the queue at most every
``max_wait_seconds`` or when nudged (a flush or close), takes everything there, and passes the
records on in one piece.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable

from housing_platform.adapters.capture.bulk import EncodedBatch
from housing_platform.adapters.capture.deferred import materialize
from housing_platform.adapters.capture.ledger import RowLedger
from housing_platform.adapters.capture.records import CaptureRecord

logger = logging.getLogger(__name__)

WAKE = object()  # put by flush()/close(): the writer looks up at once
_DONE = object()  # the builder has stopped: nothing more will be built


class Intake:
    """Items in (:meth:`put`), built batches out (:meth:`take_batch`, :meth:`drain`); see the module."""

    def __init__(self, ledger: RowLedger, *, batch_size: int, max_wait_seconds: float, name: str,
                 encoder: Callable[[list[CaptureRecord]], bytes] | None = None):
        self._ledger = ledger
        self._encoder = encoder  # the store's pre-encoding of a batch (binary COPY rows), if it has one
        self.batch_size = batch_size
        self.max_wait_seconds = max_wait_seconds
        self._input: queue.SimpleQueue = queue.SimpleQueue()  # one item per request, or WAKE
        self._built: queue.SimpleQueue = queue.SimpleQueue()  # (records, rows taken, encoded), WAKE or _DONE
        self._nudged = threading.Event()
        self._closing = threading.Event()
        self._builder_done = False  # the writer thread has seen _DONE
        self._thread: threading.Thread | None = None
        if encoder is not None:
            self._thread = threading.Thread(target=self._build_loop, name=f"{name}-builder", daemon=True)
            self._thread.start()

    def put(self, item) -> None:
        self._input.put(item)

    def wake(self) -> None:
        """Have the builder look now, and the writer after it (flush, close)."""
        self._input.put(WAKE)
        self._nudged.set()

    def close(self) -> None:
        """Build what is queued, then stop; :meth:`take_batch` returns None after the last batch."""
        self._closing.set()
        self.wake()

    # -- the builder thread ------------------------------------------------------------------

    def _build_loop(self) -> None:
        while True:
            items, woken = self._take_input(self.batch_size)
            if items:
                try:
                    self._built.put(self._build(items))
                except Exception:  # a bug here must not silently stop capturing for good
                    logger.exception("capture intake: unexpected error building %d items", len(items))
            if woken:
                self._built.put(WAKE)
            if not items and not woken and self._closing.is_set():
                self._built.put(_DONE)
                return
            if not items and not woken:
                self._nudged.wait(self.max_wait_seconds if self.max_wait_seconds > 0 else 0.01)
                self._nudged.clear()

    def _take_input(self, limit: float = math.inf) -> tuple[list, bool]:
        """Items until at least ``limit`` rows (the builder: ``batch_size``, so the writer can start on one
        batch while the next is built), and whether a WAKE was among them."""
        items: list = []
        rows = 0
        woken = False
        while rows < limit:
            try:
                item = self._input.get_nowait()
            except queue.Empty:
                break
            if item is WAKE:
                woken = True
            else:
                items.append(item)
                rows += len(item)
        return items, woken

    def _build(self, items: list) -> tuple[list[CaptureRecord], int, bytes | None]:
        rows = sum(map(len, items))
        records, failed = materialize(items)
        if failed:
            self._ledger.taken(len(failed))
            self._ledger.settle_ids(failed, written=False, rejected=True)
        encoded = None
        if self._encoder is not None and records:
            try:
                encoded = self._encoder(records)
            except Exception:  # noqa: BLE001 - the writer encodes them again and meets the error there
                logger.exception("capture intake: encoding %d rows failed", len(records))
        return records, rows - len(failed), encoded

    # -- the writer thread -------------------------------------------------------------------

    def take_batch(self, flush_waiting) -> list[CaptureRecord] | None:
        """Up to about ``batch_size`` rows (whole requests); [] when idle; None once closed and all is taken.

        Collects for at most ``max_wait_seconds`` after the first rows, less when ``flush_waiting()``.
        """
        if self._thread is None:
            return self._take_and_build(flush_waiting)
        if self._builder_done:
            return None
        try:
            first = self._built.get(timeout=0.5)
        except queue.Empty:
            return []
        if first is _DONE:
            self._builder_done = True
            return None
        parts = [] if first is WAKE else [first]
        rows = sum(part[1] for part in parts)
        woken = first is WAKE
        deadline = time.monotonic() + self.max_wait_seconds
        while rows < self.batch_size and not woken and not self._closing.is_set() and not flush_waiting():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                item = self._built.get(timeout=remaining)
            except queue.Empty:
                break
            if item is _DONE:
                self._builder_done = True
                break
            if item is WAKE:
                woken = True
            else:
                parts.append(item)
                rows += item[1]
        return self._taken(parts)

    def _take_and_build(self, flush_waiting) -> list[CaptureRecord] | None:
        """Without a builder thread: collect items as :meth:`take_batch` does, then build them here."""
        closing = self._closing.is_set()
        items, woken = self._take_input(self.batch_size)
        if not items and not woken:
            if closing:
                return None
            self._nudged.wait(0.5)
            self._nudged.clear()
            items, woken = self._take_input(self.batch_size)
        rows = sum(map(len, items))
        deadline = time.monotonic() + self.max_wait_seconds
        while items and rows < self.batch_size and not woken and not self._closing.is_set() and not flush_waiting():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            # Sleep rather than block on the queue: a blocked get() would wake this thread, and take the GIL
            # from the event loop, for every request submitted.
            self._nudged.wait(remaining)
            self._nudged.clear()
            more, woken = self._take_input(self.batch_size - rows)
            items += more
            rows += sum(map(len, more))
        return self._taken([self._build(items)]) if items else []

    def drain(self, limit: float = math.inf) -> list[CaptureRecord]:
        """Built rows (then unbuilt ones, built here) until at least ``limit`` rows, without waiting."""
        parts: list = []
        rows = 0
        while rows < limit:
            try:
                item = self._built.get_nowait()
            except queue.Empty:
                break
            if item is _DONE:
                self._builder_done = True
            elif item is not WAKE:
                parts.append(item)
                rows += item[1]
        if rows < limit:  # what the builder has not reached (or will not: it stopped)
            items = [item for item in self._take_input()[0]]
            if items:
                parts.append(self._build(items))
        return self._taken(parts)

    def _taken(self, parts: list) -> list[CaptureRecord]:
        if not parts:
            return []
        records = EncodedBatch(record for part in parts for record in part[0])
        if all(part[2] is not None for part in parts):
            records.copy_body = b"".join(part[2] for part in parts)
        rows = sum(part[1] for part in parts)
        if rows:
            self._ledger.taken(rows)
        return records

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
