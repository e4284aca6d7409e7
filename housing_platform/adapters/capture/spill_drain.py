"""Draining the spill (:mod:`.spill`) into the store, a batch at a time, from the capture writer's
thread: when the writer has caught up (rows in memory at most half its bound) and at start, which is
how rows spilled before a restart, a crash or a ``kill -9`` reach the store. Rows are inserted
skipping request ids already stored, and a segment is deleted only after its last rows are committed;
a failed insert (store down) starts the segment again later from its beginning.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path

from housing_platform.adapters.capture.errors import error_summary
from housing_platform.adapters.capture.inserter import WARNING_INTERVAL_SECONDS
from housing_platform.adapters.capture.records import CaptureRecord
from housing_platform.adapters.capture.spill import SpillLog
from housing_platform.adapters.capture.store import CaptureStore

logger = logging.getLogger(__name__)

RETRY_SECONDS = 1.0


class SpillDrainer:
    """Writer thread only: :meth:`step` writes up to ``batch_size`` spilled rows into the store."""

    def __init__(self, spill: SpillLog, store: CaptureStore, batch_size: int):
        self.spill = spill
        self.store = store
        self.batch_size = batch_size
        self._path: Path | None = None
        self._frames: Iterator[list[CaptureRecord]] | None = None
        self._rows = 0
        self._retry_at = 0.0
        self._last_log = -math.inf

    def step(self) -> bool:
        """Write one batch of spilled rows; False when there is nothing to drain now (or the store is down)."""
        if time.monotonic() < self._retry_at:
            return False
        if self._frames is None:
            if not self.spill.pending() or (path := self.spill.next_segment()) is None:
                return False
            self._path, self._frames, self._rows = path, self.spill.read(path), 0
        chunk: list[CaptureRecord] = []
        finished = False
        while len(chunk) < self.batch_size:
            try:
                chunk.extend(next(self._frames))
            except StopIteration:
                finished = True
                break
        try:
            if chunk:
                self.store.insert_captures(chunk, skip_existing=True)
        except Exception as exc:  # noqa: BLE001 - the rows stay on disk; start the segment again later
            self._frames, self._retry_at = None, time.monotonic() + RETRY_SECONDS
            now = time.monotonic()
            if now - self._last_log >= WARNING_INTERVAL_SECONDS:
                self._last_log = now
                logger.warning("capture spill %s: draining failed, retrying in %g s: %s", self._path.name,
                               RETRY_SECONDS, error_summary(exc))
            return False
        self._rows += len(chunk)
        if finished:
            self.spill.remove(self._path, self._rows)
            logger.info("capture spill %s drained: %d rows committed, file deleted", self._path.name, self._rows)
            self._frames, self._path = None, None
        return True
