"""Model-attributable failures: rows a model version was asked to score and could not answer.

Two rules (``adapters/capture/failures.py``): ``finite_prediction`` — the version's prediction for a
schema-valid row is NaN or infinite (:class:`ModelFailure`: the request is answered 422, naming the rows);
``scoring_error`` — scoring raised (:class:`ScoringFailure`, chained to the error: the app's handler logs it
and answers 500 with an ``error_id``), and every row the version was asked to score failed. In canary each failed row is
the version's that would have answered it; in shadow a challenger's failure is the challenger's (the
champion's answer stands). A client's invalid request (schema 422, other 4xx) never reaches scoring, so
it is never counted here.

:class:`FailureLog` keeps the hot path free of database writes: a failure is one dict update under a
lock and one counter increment (``housing_model_failed_rows_total``); a daemon thread flushes the
aggregates to the shared capture store every ``failure_flush_seconds`` and :meth:`FailureLog.close`
once more at shutdown. While the store is unreachable the counts stay in memory (one entry per version
and rule, so bounded) and are written with the next flush. Below ``capture_sample_percent`` = 100 the store
gets each failed row with that probability (a binomial draw per request), as it gets the answered rows, so
the error rate read from the store is unbiased; ``/metrics`` counts every failed row.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from datetime import UTC, datetime

import numpy as np

from housing_platform.adapters.capture.failures import FINITE_PREDICTION, SCORING_ERROR, FailureRow, insert_failures
from housing_platform.server.requests import RequestError

logger = logging.getLogger(__name__)
LOG_INTERVAL_SECONDS = 60.0  # at most one log line per version and rule (and per flush problem) in this interval


class ModelFailure(RequestError):
    """Non-finite predictions: the 422 answer, and the failed rows per version (rule ``finite_prediction``)."""

    rule = FINITE_PREDICTION

    def __init__(self, body: dict, rows_by_version: dict[str, int]):
        super().__init__(422, body)
        self.rows_by_version = rows_by_version


class ScoringFailure(Exception):
    """Scoring by ``version`` raised (the ``__cause__``) on the ``rows`` rows it was asked to answer."""

    rule = SCORING_ERROR

    def __init__(self, version: str, rows: int):
        super().__init__(f"model version {version} failed to score {rows:,} row(s)")
        self.version = str(version)
        self.rows_by_version = {self.version: rows}


def check_finite(predictions: np.ndarray, version: str, model_versions: list[str] | None) -> None:
    """Raise a 422 :class:`ModelFailure` naming each row whose prediction is not a finite number; the rows are
    the failures of ``model_versions[row]`` (canary) or of ``version``."""
    finite = np.isfinite(predictions)
    if finite.all():
        return
    bad = np.flatnonzero(~finite).tolist()
    invalid = RequestError.invalid([
        {"loc": ["body", "instances", i], "field": "instances", "rule": "finite prediction", "row": i,
         "type": "value_error",
         "msg": "the model cannot score this row: its prediction is not a finite number "
                "(values far outside the training range)"}
        for i in bad
    ])
    by_version = ({str(version): len(bad)} if model_versions is None
                  else dict(Counter(model_versions[i] for i in bad)))
    failure = ModelFailure(invalid.body, by_version)
    failure.rows = invalid.rows
    raise failure


class FailureLog:
    """Failed rows and requests per (version, rule) in memory, flushed aggregated to the capture store."""

    def __init__(self, counter=None, sample_percent: float = 100.0, rng: np.random.Generator | None = None):
        self._metric = counter  # prometheus Counter labelled (model_version, rule), or None
        # The store gets the failures at the capture's sampling rate, so that failed ÷ (captured + failed) estimates
        # the error rate without bias whatever `capture_sample_percent` is; /metrics counts every failed row.
        self._keep = min(max(float(sample_percent), 0.0), 100.0) / 100.0
        self._rng = rng or np.random.default_rng()
        self._lock = threading.Lock()  # guards _counts
        self._counts: dict[tuple[str, str], list] = {}  # (version, rule) -> [first failure at, rows, requests]
        self._flush_lock = threading.Lock()  # one flush at a time (the thread, a test, close)
        self._store = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._logged: dict[tuple, float] = {}

    # -- the request path ------------------------------------------------------------------------

    def record(self, version: str, rule: str, rows: int, requests: int = 1, error: BaseException | None = None) -> None:
        if rows <= 0:
            return
        key = (str(version), rule)
        if self._metric is not None:
            self._metric.labels(*key).inc(rows)
        if error is not None and self._due(key):
            logger.error("model version %s failed to score %d row(s) (%s)", version, rows, rule, exc_info=error)
        if self._keep < 1.0:  # each failed row kept with the capture's probability, as a captured row would be
            rows = int(self._rng.binomial(rows, self._keep))
            if rows == 0:
                return
        with self._lock:
            entry = self._counts.get(key)
            if entry is None:
                self._counts[key] = [datetime.now(UTC), rows, requests]
            else:
                entry[1] += rows
                entry[2] += requests

    def record_failure(self, failure: ModelFailure | ScoringFailure) -> None:
        """Count a request's failure (a raised error is logged by the app's 500 handler, not here)."""
        for version, rows in failure.rows_by_version.items():
            self.record(version, failure.rule, rows)

    def pending(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(failed rows, failed requests) per (version, rule) not yet written to the store."""
        with self._lock:
            return {key: (entry[1], entry[2]) for key, entry in self._counts.items()}

    # -- flushing --------------------------------------------------------------------------------

    def start(self, store, interval_seconds: float) -> None:
        """Flush to ``store`` every ``interval_seconds`` from a daemon thread, until :meth:`close`."""
        self._store = store
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(interval_seconds,), name="failure-flusher",
                                        daemon=True)
        self._thread.start()

    def _run(self, interval_seconds: float) -> None:
        while not self._stop.wait(interval_seconds):
            self.flush()

    def flush(self) -> bool:
        """Write the aggregates now; True when nothing is left in memory (False: the store refused, kept for later)."""
        if self._store is None:
            return not self._counts
        with self._flush_lock:
            with self._lock:
                taken, self._counts = self._counts, {}
            if not taken:
                return True
            rows = [FailureRow(first, version, rule, failed, requests)
                    for (version, rule), (first, failed, requests) in taken.items()]
            try:
                insert_failures(self._store, rows)
            except Exception as error:  # noqa: BLE001 - the store down: keep the counts, try at the next flush
                self._restore(taken)
                if self._due(("flush",)):
                    logger.warning("scoring failures not written (kept in memory, retried): %s", error)
                return False
        return True

    def _restore(self, taken: dict) -> None:
        with self._lock:
            for key, (first, failed, requests) in taken.items():
                entry = self._counts.get(key)
                if entry is None:
                    self._counts[key] = [first, failed, requests]
                else:
                    entry[0], entry[1], entry[2] = min(first, entry[0]), entry[1] + failed, entry[2] + requests

    def close(self, timeout: float = 10.0) -> bool:
        """Stop the thread and flush what is left; False when the store did not take it (logged)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        complete = self.flush()
        if not complete:
            lost = sum(failed for failed, _ in self.pending().values())
            logger.error("scoring failures of %d row(s) not written at shutdown: the store is unreachable", lost)
        return complete

    def _due(self, key: tuple) -> bool:
        now = time.monotonic()
        if now - self._logged.get(key, -LOG_INTERVAL_SECONDS) < LOG_INTERVAL_SECONDS:
            return False
        self._logged[key] = now
        return True
