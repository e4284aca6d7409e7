"""How the capture writer's thread puts a batch into the store, and when it tries again: a batch the
database refuses (a duplicate request id, say) is retried row by row so only the bad rows are lost;
when the store is unreachable (:func:`~housing_platform.adapters.capture.errors.is_transient`) the
rows go back to the writer and retries back off exponentially, with the outage logged once and then at
most every :data:`WARNING_INTERVAL_SECONDS`.
"""

from __future__ import annotations

import logging
import math
import time

from housing_platform.adapters.capture.errors import error_summary, is_transient
from housing_platform.adapters.capture.ledger import RowLedger
from housing_platform.adapters.capture.records import CaptureRecord
from housing_platform.adapters.capture.store import CaptureStore

logger = logging.getLogger(__name__)

# How often repeated warnings (store still down, rows still being dropped) are logged at most.
WARNING_INTERVAL_SECONDS = 30.0


class BatchInserter:
    """Writes batches for one writer and settles their rows in its ledger; writer thread only.

    Other threads may read ``failed_attempts`` and ``last_error`` (plain attributes) for metrics.
    """

    def __init__(
        self, store: CaptureStore, ledger: RowLedger, retry_initial_seconds: float, retry_max_seconds: float
    ):
        self.store = store
        self.ledger = ledger
        self.retry_initial_seconds = retry_initial_seconds
        self.retry_max_seconds = retry_max_seconds
        self.failed_attempts = 0
        self.last_error: str | None = None  # None while the store is reachable
        self.next_retry = 0.0  # time.monotonic() of the next attempt
        self._delay = retry_initial_seconds
        self._last_failure_log = -math.inf

    def retry_now(self) -> None:
        """Make the next attempt immediate (at close: one last try if the store was down)."""
        self.next_retry = 0.0

    def attempt(self, rows: list[CaptureRecord], *, buffered: int) -> list[CaptureRecord]:
        """Write rows; return those left unwritten because the store is unreachable.

        ``buffered`` (rows already waiting for a retry) is only reported in the log.
        """
        try:
            self.store.insert_captures(rows)
        except Exception as exc:
            if is_transient(exc):
                self._failed(exc, buffered)
                return rows
            return self._attempt_one_by_one(rows, exc, buffered)
        self._succeeded(buffered)
        self.ledger.settle(rows, written=True)
        return []

    def _attempt_one_by_one(
        self, rows: list[CaptureRecord], batch_error: Exception, buffered: int
    ) -> list[CaptureRecord]:
        logger.warning(
            "capture writer: batch of %d rows refused (%s); inserting row by row",
            len(rows),
            error_summary(batch_error),
        )
        for i, row in enumerate(rows):
            try:
                self.store.insert_captures([row])
            except Exception as exc:
                if is_transient(exc):
                    self._failed(exc, buffered)
                    return rows[i:]
                logger.warning("capture writer: row %s rejected: %s", row.request_id, error_summary(exc))
                self.ledger.settle([row], written=False, rejected=True)
            else:
                self.ledger.settle([row], written=True)
        self._succeeded(buffered)
        return []

    def _failed(self, exc: Exception, buffered: int) -> None:
        now = time.monotonic()
        first = self.last_error is None
        self.failed_attempts += 1
        self.last_error = error_summary(exc)
        self.next_retry = now + self._delay
        self._delay = min(self._delay * 2, self.retry_max_seconds)
        if first or now - self._last_failure_log >= WARNING_INTERVAL_SECONDS:
            self._last_failure_log = now
            logger.warning(
                "capture store unreachable (%d failed attempts, %d rows buffered, next retry in %.2f s): %s",
                self.failed_attempts,
                buffered,
                self.next_retry - now,
                self.last_error,
                exc_info=exc if first else None,
            )

    def _succeeded(self, buffered: int) -> None:
        if self.last_error is not None:
            logger.warning(
                "capture store reachable again after %d failed attempts; writing %d buffered rows",
                self.failed_attempts,
                buffered,
            )
        self.last_error = None
        self._delay = self.retry_initial_seconds
