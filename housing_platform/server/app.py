"""The FastAPI app: ``/v1/predict``, ``/v1/feedback``, ``/health``, ``/ready``, ``/metrics`` (docs at ``/docs``).

The hot path of ``POST /v1/predict`` is: read the body → ``orjson.loads`` → vectorised validation
(:mod:`~housing_platform.server.requests`) → :meth:`FastScorer.score_arrays` → ``orjson.dumps``.
No pandas, no pydantic per row, no Keras: one row takes well under a millisecond end to end.
Requests with more than ``inline_rows`` rows are parsed and scored in a worker thread so a
10,000-row request does not stall the small ones queued behind it on the event loop.

Capture runs *after* the response is written (a callback scheduled on the event loop, or a worker
thread for large requests). On the event loop only the request ids are queued
(:meth:`~housing_platform.adapters.capture.store.CaptureWriter.submit_deferred`): the writer thread builds the
records (training-range flags included) and does the database work while the loop serves the next
request — at concurrency 1 the client's next request would otherwise wait for that work (~0.2 ms on
a 2-core machine). A counter of captures not yet queued lets ``/v1/feedback`` wait for them, so
feedback sent right after a prediction always finds its capture. At shutdown (SIGTERM) uvicorn
finishes in-flight requests, the lifespan waits for scheduled captures, then closes the writer,
which flushes every queued row.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from housing_platform.adapters.capture.store import (
    CaptureRecord,
    CaptureStore,
    CaptureStoreUnavailable,
    CaptureWriter,
    DuplicateFeedback,
    UnknownRequestIds,
)
from housing_platform.core.schema import CATEGORICAL_COLUMN, NUMERIC_FEATURE_COLUMNS
from housing_platform.server.server_config import ServingConfig
from housing_platform.server.metrics import MetricsMiddleware, ServingMetrics
from housing_platform.server.model_manager import ModelManager, ServedModel
from housing_platform.server.requests import (
    FeedbackResponse,
    MessageResponse,
    PredictResponse,
    RequestError,
    ValidationErrorResponse,
    feedback_request_openapi,
    parse_feedback,
    parse_instances,
    parse_json,
    predict_request_openapi,
)

logger = logging.getLogger(__name__)

PREDICT_ROUTE, FEEDBACK_ROUTE = "/v1/predict", "/v1/feedback"
ROUTES = (PREDICT_ROUTE, FEEDBACK_ROUTE, "/health", "/ready", "/metrics", "/docs", "/openapi.json", "/redoc", "/")
BYTES_PER_ROW = 256  # a JSON instance is ~230 bytes: the inline/worker-thread cut-off in body size
FEEDBACK_CAPTURE_WAIT_SECONDS = 2.0
_BEDROOMS = NUMERIC_FEATURE_COLUMNS.index("total_bedrooms")


def new_request_ids(n: int) -> list[str]:
    """``n`` random UUID4s as 32-char hex, from one ``os.urandom`` call (uuid.uuid4 per row is 10× slower)."""
    if n == 1:
        return [uuid.uuid4().hex]
    raw = bytearray(os.urandom(16 * n))
    octets = np.frombuffer(raw, dtype=np.uint8).reshape(n, 16)
    octets[:, 6] = (octets[:, 6] & 0x0F) | 0x40  # version 4
    octets[:, 8] = (octets[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    text = raw.hex()
    return [text[i : i + 32] for i in range(0, 32 * n, 32)]


def json_response(status: int, body) -> Response:
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status,
                    media_type="application/json")


class ServerState:
    """What the routes share: config, metrics, the model manager and the capture writer."""

    def __init__(self, config: ServingConfig, capture_store: CaptureStore | None, registry_factory, loader):
        self.config = config
        self.metrics = ServingMetrics(ROUTES, writer_getter=lambda: self.writer)
        self._store = capture_store
        self._owns_store = capture_store is None
        self.store: CaptureStore | None = None
        self.writer: CaptureWriter | None = None
        self.pending_captures = 0  # captures scheduled but not yet queued; touched only on the event loop
        self._capture_tasks: set[asyncio.Task] = set()
        kwargs = {"loader": loader} if loader is not None else {}
        self.manager = ModelManager(
            config.model_uri,
            registry_factory or self._registry,
            poll_interval_seconds=config.poll_interval_seconds,
            load_retry_seconds=config.load_retry_seconds,
            on_loaded=self._on_loaded,
            on_failure=lambda error: self.metrics.model_load_failures.inc(),
            **kwargs,
        )

    def _registry(self):
        from housing_platform.adapters.mlflow_registry import ModelRegistry

        return ModelRegistry(
            self.config.tracking_uri, self.config.artifact_root, model_name=self.manager.reference.name
        )

    def _on_loaded(self, served: ServedModel, previous: ServedModel | None) -> None:
        self.metrics.set_model(served.version, served.model_uri, served.run_id)
        self.metrics.model_loaded.observe(served.load_seconds)
        if previous is not None:
            self.metrics.model_swaps.inc()

    def start(self) -> None:
        from threadpoolctl import threadpool_limits

        # BLAS threads would compete with the event loop and the capture writer for the same cores.
        self._blas_limits = threadpool_limits(limits=self.config.blas_threads, user_api="blas")
        # The capture writer thread holds the GIL in bursts (SQLAlchemy builds each batch in Python);
        # a shorter switch interval hands the event loop back sooner, which caps request latency.
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(self.config.gil_switch_interval_seconds)
        self.store = self._store or CaptureStore(self.config.capture_url)
        self.writer = CaptureWriter(
            self.store,
            max_queue_rows=self.config.capture_queue_rows,
            batch_size=self.config.capture_batch_rows,
            sample_percent=self.config.capture_sample_percent,
            exit_flush_seconds=self.config.shutdown_flush_seconds,
        )
        self.manager.start()
        logger.info("serving %s; capturing %g%% of rows to %r", self.config.model_uri,
                    self.config.capture_sample_percent, self.store)

    def stop(self) -> None:
        self.manager.stop()
        if self.writer is not None:
            complete = self.writer.close(timeout=self.config.shutdown_flush_seconds)
            stats = self.writer.stats()
            (logger.info if complete else logger.error)(
                "capture flushed at shutdown: %d rows written, %d dropped", stats.written, stats.dropped
            )
        if self.store is not None and self._owns_store:
            self.store.dispose()
        if getattr(self, "_blas_limits", None) is not None:
            self._blas_limits.restore_original_limits()
            sys.setswitchinterval(self._switch_interval)

    # -- the predict path -------------------------------------------------------------------------

    def score_body(self, body: bytes, served: ServedModel, started: float) -> tuple[bytes, tuple]:
        """Parse, validate and score; returns the response body and what the capture needs."""
        instances = parse_instances(parse_json(body), self.config.max_rows_per_request)
        scorer = served.scorer
        predictions = scorer.score_arrays(instances.numeric, scorer.category_codes(instances.categories))
        if not np.isfinite(predictions).all():
            bad = np.flatnonzero(~np.isfinite(predictions)).tolist()
            raise RequestError.invalid(
                [
                    {"loc": ["body", "instances", i], "field": "instances", "rule": "finite prediction", "row": i,
                     "type": "value_error",
                     "msg": "the model cannot score this row: its prediction is not a finite number "
                            "(values far outside the training range)"}
                    for i in bad
                ]
            )
        n = len(instances)
        request_ids = new_request_ids(n)
        latency_ms = (time.perf_counter() - started) * 1000.0
        content = orjson.dumps(
            {"predictions": predictions, "model_version": served.version, "request_ids": request_ids},
            option=orjson.OPT_SERIALIZE_NUMPY,
        )
        return content, (served, instances, predictions, request_ids, latency_ms, datetime.now(UTC))

    def schedule_capture(self, capture: tuple) -> None:
        """Capture after the response is written: this runs from the handler, which then sends the
        response without yielding to the event loop, so the callback (or task) runs after it."""
        self.pending_captures += 1
        loop = asyncio.get_running_loop()
        if len(capture[3]) > self.config.inline_rows:
            task = loop.create_task(self._capture_in_thread(capture))
            self._capture_tasks.add(task)
            task.add_done_callback(self._capture_tasks.discard)
        else:
            loop.call_soon(self._capture_now, capture)

    def _capture_now(self, capture: tuple) -> None:
        try:
            self.capture(*capture, deferred=True)
        except Exception:  # noqa: BLE001 - the response is sent; log the bug, keep serving
            logger.exception("capturing %d rows failed", len(capture[3]))
        finally:
            self.pending_captures -= 1

    async def _capture_in_thread(self, capture: tuple) -> None:
        try:
            await run_in_threadpool(self.capture, *capture)
        except Exception:  # noqa: BLE001
            logger.exception("capturing %d rows failed", len(capture[3]))
        finally:
            self.pending_captures -= 1

    def flush_captures(self, timeout: float = 10.0) -> bool:
        """From another thread: wait until every answered request's rows are written (tests, tools)."""
        deadline = time.monotonic() + timeout
        while self.pending_captures and time.monotonic() < deadline:
            time.sleep(0.001)
        return self.writer is not None and self.writer.flush(max(0.0, deadline - time.monotonic()))

    async def drain_captures(self, timeout: float = 30.0) -> None:
        """Wait for scheduled captures to reach the writer (at shutdown, before it is closed)."""
        deadline = time.monotonic() + timeout
        while (self.pending_captures or self._capture_tasks) and time.monotonic() < deadline:
            if self._capture_tasks:
                await asyncio.wait(set(self._capture_tasks), timeout=max(0.0, deadline - time.monotonic()))
            else:
                await asyncio.sleep(0.001)

    def capture(self, served, instances, predictions, request_ids, latency_ms, captured_at, deferred=False) -> None:
        """Queue the capture records (never blocks; drops are counted by the writer).

        ``deferred``: only the request ids are queued here and the writer thread builds the records
        (training-range flags and all) — used on the event loop, where at concurrency 1 the work
        would otherwise delay the client's next request.
        """
        writer = self.writer
        if writer is None:
            return
        args = (served, instances, predictions, request_ids, latency_ms, captured_at)
        if deferred:
            writer.submit_deferred(request_ids, lambda: self._capture_records(*args))
        else:
            writer.submit(self._capture_records(*args))

    def _capture_records(self, served, instances, predictions, request_ids, latency_ms, captured_at) -> list:
        """The requests' rows as CaptureRecords, with training-range flags (also counted in /metrics)."""
        scorer = served.scorer
        flags = scorer.out_of_range({CATEGORICAL_COLUMN: instances.categories}, numeric=instances.numeric)
        columns = instances.numeric.T.tolist()
        bedrooms = columns[_BEDROOMS]
        if any(v != v for v in bedrooms):  # NaN -> None: a null, not a number, in the store
            columns[_BEDROOMS] = [None if v != v else v for v in bedrooms]
        version = served.version
        records = [
            CaptureRecord(rid, captured_at, version, lon, lat, age, rooms, beds, pop, hh, inc, cat, pred, latency_ms, flag)
            for rid, lon, lat, age, rooms, beds, pop, hh, inc, cat, pred, flag in zip(
                request_ids, *columns, instances.categories, predictions.tolist(), flags
            )
        ]
        flagged = [f for f in flags if f]
        if flagged:
            counts: dict[str, int] = {}
            for flag in flagged:
                for feature in flag.split(","):
                    counts[feature] = counts.get(feature, 0) + 1
            for feature, count in counts.items():
                self.metrics.out_of_range.labels(feature).inc(count)
        return records


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing (413) more than ``limit`` bytes without reading them all."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise RequestError(413, {"detail": f"request body of {int(length):,} bytes is larger than {limit:,} bytes"})
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, {"detail": f"request body is larger than {limit:,} bytes"})
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def create_app(
    config: ServingConfig | None = None,
    *,
    capture_store: CaptureStore | None = None,
    registry_factory=None,
    loader=None,
) -> FastAPI:
    """The model server. Threads (model polling, capture writing) start with the app's lifespan.

    ``capture_store`` (default: a store at ``config.capture_url``), ``registry_factory`` (default: a
    :class:`~housing_platform.adapters.mlflow_registry.ModelRegistry` at ``config.tracking_uri``) and ``loader``
    (default: :func:`housing_platform.scoring.scorer.load_fast_scorer`) are injectable for tests.
    """
    config = config or ServingConfig.from_settings()
    state = ServerState(config, capture_store, registry_factory, loader)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.start()
        try:
            yield
        finally:
            await state.drain_captures()
            state.stop()

    app = FastAPI(
        title="housing_platform model server",
        version="1",
        description=(
            "Median house value of California districts from the registered `housing_price_model`.\n\n"
            "Every scored row is captured (inputs, prediction, model version, latency, training-range flags) "
            "for live-quality monitoring; send the true value later with its request id to `/v1/feedback`. "
            "Input rules are the training schema's: a 422 names the row, field and rule for every problem."
        ),
        lifespan=lifespan,
    )
    app.state.server = state
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception) -> Response:
        error_id = uuid.uuid4().hex
        logger.exception("unhandled error %s on %s %s", error_id, request.method, request.url.path)
        return json_response(500, {"detail": "internal server error; it has been logged", "error_id": error_id})

    max_rows = config.max_rows_per_request
    inline_bytes = config.inline_rows * BYTES_PER_ROW

    @app.post(
        PREDICT_ROUTE,
        summary="Predict median house values",
        description=(
            f"1 to {max_rows:,} districts per request (more → 413). Values outside the *training* range are "
            "accepted and flagged in the capture; values breaking the schema are refused with 422."
        ),
        openapi_extra=predict_request_openapi(max_rows),
        response_model=PredictResponse,
        responses={
            413: {"model": MessageResponse, "description": "Too many rows or too large a body."},
            422: {"model": ValidationErrorResponse, "description": "Invalid input: row, field and rule of each problem."},
            503: {"model": MessageResponse, "description": "No model loaded yet."},
        },
        tags=["scoring"],
    )
    async def predict(request: Request) -> Response:
        started = time.perf_counter()
        served = state.manager.current
        if served is None:
            return json_response(503, {"detail": _not_ready_message(state)})
        try:
            body = await read_body(request, config.max_body_bytes)
            if len(body) > inline_bytes:
                content, capture = await run_in_threadpool(state.score_body, body, served, started)
            else:
                content, capture = state.score_body(body, served, started)
        except RequestError as error:
            if error.status == 422:
                state.metrics.rows_rejected.inc(error.rows)
            return json_response(error.status, error.body)
        state.metrics.rows_scored.inc(len(capture[3]))
        if config.capture_sample_percent > 0:  # 0 switches capture off entirely (not even records are built)
            state.schedule_capture(capture)
        return Response(content, media_type="application/json")

    @app.post(
        FEEDBACK_ROUTE,
        summary="Record the true value of scored districts",
        description=(
            "One `{request_id, median_house_value}` or a list of them; all or nothing. "
            "404: an id was never scored (or not captured); 409: feedback already recorded; "
            "422: malformed id or value; 503: capture store unreachable, retry."
        ),
        openapi_extra=feedback_request_openapi(max_rows),
        response_model=FeedbackResponse,
        responses={
            404: {"model": MessageResponse, "description": "Unknown request id(s)."},
            409: {"model": MessageResponse, "description": "Feedback already recorded for these id(s)."},
            413: {"model": MessageResponse},
            422: {"model": ValidationErrorResponse},
            503: {"model": MessageResponse},
        },
        tags=["monitoring"],
    )
    async def feedback(request: Request) -> Response:
        try:
            items = parse_feedback(parse_json(await read_body(request, config.max_body_bytes)), max_rows)
        except RequestError as error:
            return json_response(error.status, error.body)
        deadline = time.monotonic() + FEEDBACK_CAPTURE_WAIT_SECONDS
        while state.pending_captures and time.monotonic() < deadline:
            await asyncio.sleep(0.001)  # captures of responses already sent are being queued
        try:
            receipt = await run_in_threadpool(state.store.record_feedback, items)
        except UnknownRequestIds as error:
            return json_response(404, {"detail": f"no captured prediction has these request ids: {_ids(error)}",
                                       "request_ids": list(error.request_ids[:100])})
        except DuplicateFeedback as error:
            return json_response(409, {"detail": f"feedback is already recorded for: {_ids(error)}",
                                       "request_ids": list(error.request_ids[:100])})
        except CaptureStoreUnavailable as error:
            return json_response(503, {"detail": f"capture store unavailable, retry later: {error}"})
        except ValueError as error:
            return json_response(422, {"detail": str(error)})
        state.metrics.feedback_rows.inc(receipt.recorded)
        return json_response(200, {"recorded": receipt.recorded, "received_at": receipt.received_at.isoformat()})

    @app.get("/health", summary="Liveness: the process answers", tags=["operations"], response_model=MessageResponse)
    async def health() -> Response:
        return json_response(200, {"detail": "alive"})

    @app.get(
        "/ready",
        summary="Readiness: a model version is loaded",
        tags=["operations"],
        responses={503: {"model": MessageResponse, "description": "No model loaded yet."}},
    )
    async def ready() -> Response:
        served = state.manager.current
        if served is None:
            return json_response(503, {"detail": _not_ready_message(state)})
        return json_response(200, {
            "detail": "ready",
            "model_version": served.version,
            "model_uri": served.model_uri,
            "follows": state.manager.reference.uri,
            "loaded_at": served.loaded_at.isoformat(),
            "last_poll_error": state.manager.last_error,
        })

    @app.get("/metrics", summary="Prometheus metrics", tags=["operations"], response_class=Response)
    async def metrics() -> Response:
        return Response(state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    async def root() -> Response:
        return RedirectResponse("/docs")

    return app


def _not_ready_message(state: ServerState) -> str:
    error = state.manager.last_error
    return f"no model loaded yet for {state.manager.reference.uri}" + (f": {error}" if error else " (loading)")


def _ids(error) -> str:
    shown = ", ".join(error.request_ids[:10])
    return shown + (f" and {len(error.request_ids) - 10} more" if len(error.request_ids) > 10 else "")


__all__ = ["ServerState", "create_app", "new_request_ids"]
