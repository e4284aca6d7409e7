"""What the routes of one model server share (:class:`ServerState`: config, metrics, model manager,
capture writer) and the capture of answered requests, which runs after the response is written: a
callback on the event loop that queues only the request ids (the writer thread builds the records
while the loop serves the next request — at concurrency 1 the client's next request would otherwise
wait for that work), or a worker thread for large requests. A capture scheduled but not yet queued
is *pending*; an ``asyncio.Event`` set whenever none is lets ``/v1/feedback`` wait for the captures
of responses already sent, and the shutdown wait for all of them before the writer is closed. Rows a
model version could not answer are counted by a :class:`~housing_platform.server.failures.FailureLog`
and flushed aggregated to the same store (``server/failures.py``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import orjson
from starlette.concurrency import run_in_threadpool

from housing_platform.adapters.capture.records import CaptureRecord, new_request_ids
from housing_platform.adapters.capture.spill import SpillLog
from housing_platform.adapters.capture.store import CaptureStore
from housing_platform.adapters.capture.writer import CaptureWriter
from housing_platform.adapters.fallback_store import read_fallback_baseline
from housing_platform.adapters.mlflow_registry import CHAMPION_ALIAS
from housing_platform.adapters.model_uri import ModelReference
from housing_platform.core.schema import CATEGORICAL_COLUMN, NUMERIC_FEATURE_COLUMNS
from housing_platform.scoring.errors import ScoringError
from housing_platform.scoring.fallback import FALLBACK_VERSION
from housing_platform.server.failures import FailureLog, ModelFailure, ScoringFailure, check_finite
from housing_platform.server.metrics import ServingMetrics
from housing_platform.server.model_manager import ModelManager, Refusal, ServedModel, ServingStatus
from housing_platform.server.requests import Instances, parse_instances, parse_json
from housing_platform.server.rollout_scoring import score_routed, shadow_predictions
from housing_platform.server.server_config import ServingConfig

logger = logging.getLogger(__name__)

_BEDROOMS = NUMERIC_FEATURE_COLUMNS.index("total_bedrooms")


@dataclass(frozen=True, slots=True)
class RequestCapture:
    """One answered predict request: everything its capture records are built from."""

    served: ServedModel
    instances: Instances
    predictions: np.ndarray
    request_ids: list[str]
    latency_ms: float
    captured_at: datetime
    model_versions: list[str] | None = None  # canary: the version that answered each row
    shadow: ServedModel | None = None  # shadow: the challenger that scores the rows with the capture

    @property
    def rows(self) -> int:
        return len(self.request_ids)


class ServerState:
    """What the routes share: config, metrics, the model manager and the capture writer."""

    def __init__(
        self,
        config: ServingConfig,
        capture_store: CaptureStore | None,
        registry_factory,
        loader,
        *,
        routes: tuple[str, ...],
    ):
        self.config = config
        self.metrics = ServingMetrics(routes, writer_getter=lambda: self.writer, status_getter=self._serving_status)
        self._store = capture_store
        self._owns_store = capture_store is None
        self.store: CaptureStore | None = None
        self.writer: CaptureWriter | None = None
        # flushed to the store from start() on, sampled as the captures are
        self.failures = FailureLog(self.metrics.model_failed_rows, config.capture_sample_percent)
        self.pending_captures = 0  # captures scheduled but not yet queued; touched only on the event loop
        self._no_pending_captures = asyncio.Event()  # set while pending_captures == 0
        self._no_pending_captures.set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._capture_tasks: set[asyncio.Task] = set()
        self.fallback: ServedModel | None = None  # the heuristic baseline, read at start (fallback_on_no_model)
        self.fallback_problem: str | None = None  # why there is none, when it is on
        self.metrics.fallback_active.set_function(lambda: 1.0 if self.fallback_in_use() else 0.0)
        kwargs = {"loader": loader} if loader is not None else {}
        self.manager = ModelManager(
            config.model_uri,
            registry_factory or self._registry,
            poll_interval_seconds=config.poll_interval_seconds,
            load_retry_seconds=config.load_retry_seconds,
            backoff_seconds=config.refused_load_backoff_seconds,
            backoff_max_seconds=config.refused_load_backoff_max_seconds,
            on_loaded=self._on_loaded,
            on_failure=self._on_failure,
            follow_challenger=ModelReference.parse(config.model_uri).alias == CHAMPION_ALIAS,
            **kwargs,
        )

    def _registry(self):
        from housing_platform.adapters.mlflow_registry import ModelRegistry

        return ModelRegistry(  # a missing SQLite database is an error naming it, never a new empty registry
            self.config.tracking_uri, self.config.artifact_root, model_name=self.manager.reference.name,
            must_exist=True,
        )

    def serving(self) -> ServedModel | None:
        """What a predict request is scored with: the loaded version; else, once loading it has failed
        (the registry or the version refused), the fallback baseline if configured; else None (503)."""
        served = self.manager.current
        if served is not None or self.fallback is None or self.manager.last_error is None:
            return served
        return self.fallback

    def fallback_in_use(self) -> bool:
        manager = getattr(self, "manager", None)
        return manager is not None and self.fallback is not None and self.serving() is self.fallback

    def _read_fallback(self) -> None:
        path = self.config.fallback_baseline_path
        if not self.config.fallback_on_no_model or not path:
            return
        try:
            scorer = read_fallback_baseline(path)  # a path, or the bucket's object in the production profile
        except ScoringError as error:
            self.fallback_problem = str(error)
            logger.warning("no fallback: %s; requests get 503 while no version is loaded", error)
            return
        self.fallback = ServedModel(self.manager.reference.name, FALLBACK_VERSION, f"fallback:{path}", None, scorer,
                                    datetime.now(UTC), 0.0)

    def _serving_status(self) -> ServingStatus | None:
        manager = getattr(self, "manager", None)  # a scrape may come before the manager exists
        return manager.status() if manager is not None else None

    def _on_failure(self, error: Exception, refusal: Refusal | None) -> None:
        self.metrics.model_load_failures.inc()
        if refusal is not None:
            self.metrics.refused_loads.labels(refusal.kind).inc()

    def _on_loaded(self, served: ServedModel, previous: ServedModel | None) -> None:
        self.metrics.set_model(served.version, served.model_uri, served.run_id)
        self.metrics.model_loaded.observe(served.load_seconds)
        if previous is not None:
            self.metrics.model_swaps.inc()

    def start(self) -> None:
        """Start serving; called on the event loop that will serve the requests (the app's lifespan)."""
        from threadpoolctl import threadpool_limits

        # A new loop may serve the app each time it starts (TestClient does): bind to this one.
        self._loop = asyncio.get_running_loop()
        self._no_pending_captures = asyncio.Event()
        self._no_pending_captures.set()
        # BLAS threads would compete with the event loop and the capture writer for the same cores.
        self._blas_limits = threadpool_limits(limits=self.config.blas_threads, user_api="blas")
        # The capture writer thread holds the GIL in bursts (SQLAlchemy builds each batch in Python);
        # a shorter switch interval hands the event loop back sooner, which caps request latency.
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(self.config.gil_switch_interval_seconds)
        self._read_fallback()
        self.store = self._store or CaptureStore(self.config.capture_url)
        self.writer = CaptureWriter(
            self.store,
            max_queue_rows=self.config.capture_queue_rows,
            buffer_max_rows=self.config.capture_queue_rows,  # admitted rows always fit while the store is down
            batch_size=self.config.capture_batch_rows or self.store.preferred_batch_rows,
            sample_percent=self.config.capture_sample_percent,
            exit_flush_seconds=self.config.shutdown_flush_seconds,
            spill=self._spill_log(),
        )
        self.failures.start(self.store, self.config.failure_flush_seconds)
        self.manager.start()
        logger.info("serving %s; capturing %g%% of rows to %r", self.config.model_uri,
                    self.config.capture_sample_percent, self.store)

    def _spill_log(self) -> SpillLog | None:
        """The spill folder: drained at start whatever the mode (rows spilled before a restart), written in spill mode."""
        folder = self.config.capture_spill_dir
        return SpillLog(folder, max_bytes=self.config.capture_spill_max_bytes) if folder else None

    def stop(self) -> None:
        self.manager.stop()
        if self.writer is not None:
            complete = self.writer.close(timeout=self.config.shutdown_flush_seconds)
            stats = self.writer.stats()
            (logger.info if complete else logger.error)(
                "capture flushed at shutdown: %d rows written, %d dropped", stats.written, stats.dropped
            )
        self.failures.close()  # after the writer: building its last records may have scored shadow rows
        if self.store is not None and self._owns_store:
            self.store.dispose()
        if getattr(self, "_blas_limits", None) is not None:
            self._blas_limits.restore_original_limits()
            sys.setswitchinterval(self._switch_interval)

    # -- the predict path -------------------------------------------------------------------------

    def rollout(self, served: ServedModel):
        """The challenger served beside ``served`` (an ActiveRollout), or None; read once per request."""
        challenger = self.manager.challenger
        return challenger.current if challenger is not None and served is not self.fallback else None

    def score_body(self, body: bytes, served: ServedModel, started: float,
                   routing_key: str | None = None, rollout=None) -> tuple[bytes, RequestCapture]:
        """Parse, validate and score (with the challenger too during a rollout, see ``rollout_scoring.py``);
        returns the response body and what the capture needs."""
        instances = parse_instances(parse_json(body), self.config.max_rows_per_request)  # a client's 4xx: not counted
        try:  # from here on a failure is the model's: counted per version (server/failures.py)
            routed = score_routed(instances, served, rollout, routing_key, self.config.shadow_sample_percent)
            check_finite(routed.predictions, served.version, routed.model_versions)
        except (ModelFailure, ScoringFailure) as failure:  # 422 naming the rows; 500 from the app's handler
            self.failures.record_failure(failure)
            raise
        if routed.challenger_rows:
            self.metrics.challenger_rows.inc(routed.challenger_rows)
        predictions = routed.predictions
        n = len(instances)
        request_ids = new_request_ids(n)
        latency_ms = (time.perf_counter() - started) * 1000.0
        answer = {"predictions": predictions, "model_version": served.version, "request_ids": request_ids}
        bounds = _interval_bounds(served, rollout, routed.model_versions, predictions)
        if bounds is not None:
            answer["lower"], answer["upper"] = bounds
        if served.version == FALLBACK_VERSION:  # no model could be loaded: the heuristic baseline answered
            answer["fallback"] = True
        if routed.model_versions is not None:
            answer["model_versions"] = routed.model_versions
        content = orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)
        return content, RequestCapture(served, instances, predictions, request_ids, latency_ms, datetime.now(UTC),
                                       routed.model_versions, routed.shadow)

    # -- capture, after the response --------------------------------------------------------------

    def admit_capture(self, capture: RequestCapture) -> bool:
        """Before the answer is sent: reserve the capture's rows in the writer, or False when the rows in
        memory would pass ``capture_queue_rows`` (the route answers 503 with Retry-After: nothing lost)."""
        writer = self.writer
        return writer is None or writer.admit(capture.rows)

    def schedule_capture(self, capture: RequestCapture) -> None:
        """Capture after the response is written: this runs from the handler, which then sends the
        response without yielding to the event loop, so the callback (or task) runs after it."""
        self.pending_captures += 1
        self._no_pending_captures.clear()
        loop = asyncio.get_running_loop()
        if capture.rows > self.config.inline_rows:
            task = loop.create_task(self._capture_in_thread(capture))
            self._capture_tasks.add(task)
            task.add_done_callback(self._capture_tasks.discard)
        else:
            loop.call_soon(self._capture_now, capture)

    def _capture_now(self, capture: RequestCapture) -> None:
        try:
            self.capture(capture, deferred=True)
        except Exception:  # noqa: BLE001 - the response is sent; log the bug, keep serving
            logger.exception("capturing %d rows failed", capture.rows)
        finally:
            self._capture_done()

    async def _capture_in_thread(self, capture: RequestCapture) -> None:
        try:
            await run_in_threadpool(self.capture, capture)
        except Exception:  # noqa: BLE001
            logger.exception("capturing %d rows failed", capture.rows)
        finally:
            self._capture_done()

    def _capture_done(self) -> None:
        self.pending_captures -= 1
        if not self.pending_captures:
            self._no_pending_captures.set()

    async def wait_captures_queued(self, timeout: float) -> bool:
        """On the event loop: wait until every scheduled capture has reached the writer; False on timeout."""
        if self._no_pending_captures.is_set():  # the common case; and wait_for(..., 0) times out even on a set event
            return True
        try:
            await asyncio.wait_for(self._no_pending_captures.wait(), max(0.0, timeout))
        except TimeoutError:
            return False
        return True

    def flush_captures(self, timeout: float = 10.0) -> bool:
        """From another thread: wait until every answered request's rows, and the failures counted so far, are
        written (tests, tools)."""
        deadline = time.monotonic() + timeout
        loop = self._loop
        if loop is not None and loop.is_running():
            if _running_loop() is loop:
                raise RuntimeError("flush_captures() blocks: call it from another thread than the event loop's")
            queued = asyncio.run_coroutine_threadsafe(self.wait_captures_queued(timeout), loop)
            try:
                queued.result(timeout)
            except (TimeoutError, concurrent.futures.CancelledError):
                queued.cancel()  # captures late or the loop gone: flush what did reach the writer
        written = self.writer is not None and self.writer.flush(max(0.0, deadline - time.monotonic()))
        return self.failures.flush() and written

    async def drain_captures(self, timeout: float = 30.0) -> None:
        """Wait for scheduled captures to reach the writer (at shutdown, before it is closed)."""
        deadline = time.monotonic() + timeout
        if await self.wait_captures_queued(timeout) and self._capture_tasks:
            # Their work is done; let the tasks themselves finish too.
            await asyncio.wait(set(self._capture_tasks), timeout=max(0.0, deadline - time.monotonic()))

    def capture(self, capture: RequestCapture, deferred: bool = False) -> None:
        """Queue the capture records (never blocks; drops are counted by the writer).

        ``deferred``: only the request ids are queued here and the writer thread builds the records
        (training-range flags and all) — used on the event loop, where at concurrency 1 the work
        would otherwise delay the client's next request.
        """
        writer = self.writer
        if writer is None:
            return
        if deferred:  # admitted by admit_capture() before the answer: always queued
            writer.submit_deferred(capture.request_ids, lambda: self._capture_records(capture), admitted=capture.rows)
            return
        try:
            records = self._capture_records(capture)
        except BaseException:
            writer.release(capture.rows)
            raise
        writer.submit(records, admitted=capture.rows)

    def capture_records(self, capture: RequestCapture) -> list[CaptureRecord]:
        return self._capture_records(capture)

    def _capture_records(self, capture: RequestCapture) -> list[CaptureRecord]:
        """The requests' rows as CaptureRecords, with training-range flags (also counted in /metrics)."""
        served, instances = capture.served, capture.instances
        flags = served.scorer.out_of_range({CATEGORICAL_COLUMN: instances.categories}, numeric=instances.numeric)
        columns = instances.numeric.T.tolist()
        bedrooms = columns[_BEDROOMS]
        if any(v != v for v in bedrooms):  # NaN -> None: a null, not a number, in the store
            columns[_BEDROOMS] = [None if v != v else v for v in bedrooms]
        shadow = capture.shadow
        shadowed = shadow_predictions(shadow, instances, self.failures) if shadow is not None else None
        if shadowed is not None:
            self.metrics.shadow_rows.inc(sum(value is not None for value in shadowed))
        records = CaptureRecord.from_columns(
            capture.request_ids, capture.captured_at, served.version, [*columns, instances.categories],
            capture.predictions.tolist(), capture.latency_ms, flags, capture.model_versions,
            shadow.version if shadow is not None else None, shadowed,
        )
        flagged = [f for f in flags if f]
        if flagged:
            counts: dict[str, int] = {}
            for flag in flagged:
                for feature in flag.split(","):
                    counts[feature] = counts.get(feature, 0) + 1
            for feature, count in counts.items():
                self.metrics.out_of_range.labels(feature).inc(count)
        return records


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _interval_bounds(served: ServedModel, rollout, model_versions: list[str] | None, predictions: np.ndarray):
    """``(lower, upper)`` per row from the version that answered it, or None when a version has no
    calibration (the fallback, or a version registered before intervals existed)."""
    bounds = getattr(served.scorer, "interval_bounds", lambda _: None)(predictions)
    if bounds is None or model_versions is None:
        return bounds
    # canary: rows answered by the challenger take the challenger's interval
    challenger_bounds = getattr(rollout.served.scorer, "interval_bounds", lambda _: None)(predictions)
    if challenger_bounds is None:
        return None
    by_challenger = np.asarray(model_versions) == rollout.served.version
    return tuple(np.where(by_challenger, ours, theirs) for theirs, ours in zip(bounds, challenger_bounds))

