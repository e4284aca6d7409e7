"""The model server's HTTP routes (``/v1/predict``, ``/v1/feedback``, ``/health``, ``/ready``,
``/metrics``), added to an app by :func:`add_routes` and bound to its
:class:`~housing_platform.server.state.ServerState`.
The hot path of ``POST /v1/predict`` is: read the body → ``orjson.loads`` → vectorised validation
(:mod:`~housing_platform.server.requests`) → ``FastScorer.score_arrays`` → ``orjson.dumps``; no
pandas, no pydantic per row, no Keras, so one row takes well under a millisecond end to end.
Requests with more than ``inline_rows`` rows are parsed and scored in a worker thread so a
10,000-row request does not stall the small ones queued behind it on the event loop.
"""

from __future__ import annotations

import os
import time

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from housing_platform.adapters.capture.errors import CaptureStoreUnavailable, DuplicateFeedback, UnknownRequestIds
from housing_platform.adapters.token_store import SCOPE_ADMIN, SCOPE_FEEDBACK, SCOPE_PREDICT
from housing_platform.server.api_schema import (
    FeedbackResponse,
    MessageResponse,
    PredictResponse,
    ValidationErrorResponse,
    error_responses,
    feedback_request_openapi,
    predict_request_openapi,
)
from housing_platform.server.auth import TokenAuth, document_security
from housing_platform.server.capture_admission import QUEUED, REFUSED, admit_capture, capture_readiness
from housing_platform.server.content_type import unsupported_content_type
from housing_platform.server.requests import RequestError, parse_feedback, parse_json
from housing_platform.server.state import ServerState

PREDICT_ROUTE, FEEDBACK_ROUTE = "/v1/predict", "/v1/feedback"
ROUTES = (PREDICT_ROUTE, FEEDBACK_ROUTE, "/health", "/ready", "/metrics", "/docs", "/openapi.json", "/redoc", "/")
# The token scope each route needs once authentication is on (server/auth.py); the others stay open.
SCOPES_BY_ROUTE = {PREDICT_ROUTE: SCOPE_PREDICT, FEEDBACK_ROUTE: SCOPE_FEEDBACK, "/metrics": SCOPE_ADMIN}
BYTES_PER_ROW = 256  # a JSON instance is ~230 bytes: the inline/worker-thread cut-off in body size
FEEDBACK_CAPTURE_WAIT_SECONDS = 2.0
ROUTING_KEY_HEADER = "X-Routing-Key"  # canary: rows of requests with the same key go to the same model


def json_response(status: int, body, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status,
                    media_type="application/json", headers=headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing (415) anything but JSON and (413) more than ``limit`` bytes, before reading it."""
    if (problem := unsupported_content_type(request.headers.get("content-type"))) is not None:
        raise RequestError(415, {"detail": problem})
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


def add_routes(app: FastAPI, state: ServerState) -> None:
    """Add the routes to ``app``, closed over ``state``; the OpenAPI descriptions state its config's limits.

    Added to the app itself rather than through an ``APIRouter``: an included router is one more
    level of matching on every request of the hot path.
    """
    config = state.config
    max_rows = config.max_rows_per_request
    inline_bytes = config.inline_rows * BYTES_PER_ROW
    auth = app.state.auth = TokenAuth(config, state.metrics, SCOPES_BY_ROUTE)
    document_security(app, SCOPES_BY_ROUTE, rate_limited=(FEEDBACK_ROUTE,))

    @app.post(
        PREDICT_ROUTE,
        summary="Predict median house values",
        description=(
            f"1 to {max_rows:,} districts per request (more → 413). Values outside the *training* range are "
            "accepted and flagged in the capture; values breaking the schema are refused with 422."
        ),
        openapi_extra=predict_request_openapi(max_rows),
        response_model=PredictResponse,
        responses=error_responses(400, 413, 415, 422, 503) | {
            413: {"model": MessageResponse, "description": "Too many rows or too large a body."},
            422: {"model": ValidationErrorResponse, "description": "Invalid input: row, field and rule of each problem."},
            503: {"model": MessageResponse,
                  "description": "No model loaded yet, or capture at its bound (with Retry-After; not answered)."},
        },
        tags=["scoring"],
    )
    async def predict(request: Request) -> Response:
        started = time.perf_counter()
        if (refused := auth.refuse(request, PREDICT_ROUTE)) is not None:
            return refused
        served = state.serving()  # the loaded version, or the fallback baseline when none could be loaded
        if served is None:
            return json_response(503, {"detail": _not_ready_message(state)})
        rollout = state.rollout(served)  # a challenger beside the champion (shadow | canary), or None
        routing_key = request.headers.get(ROUTING_KEY_HEADER) if rollout is not None else None
        try:
            body = await read_body(request, config.max_body_bytes)
            if len(body) > inline_bytes:
                content, capture = await run_in_threadpool(state.score_body, body, served, started, routing_key,
                                                           rollout)
            else:
                content, capture = state.score_body(body, served, started, routing_key, rollout)
        except RequestError as error:
            if error.status == 422:
                state.metrics.rows_rejected.inc(error.rows)
            return json_response(error.status, error.body)
        capturing = config.capture_sample_percent > 0  # 0 switches capture off entirely (not even records are built)
        admission = await admit_capture(state, capture) if capturing else None  # before answering: nothing is lost
        if admission is REFUSED:
            return json_response(503, {"detail": "capture is at its bound (capture_queue_rows): not answered, retry"},
                                 headers={"Retry-After": str(config.capture_retry_after_seconds)})
        state.metrics.rows_scored.inc(capture.rows)
        if served is state.fallback:
            state.metrics.fallback_rows.inc(capture.rows)
        if admission is QUEUED:  # SPILLED: already on disk
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
        responses=error_responses(400, 404, 409, 413, 415, 422, 503, descriptions={
            404: "Unknown request id(s).",
            409: "Feedback already recorded for these id(s).",
            503: "The capture store is unreachable: retry.",
        }),
        tags=["monitoring"],
    )
    async def feedback(request: Request) -> Response:
        if (refused := auth.refuse(request, FEEDBACK_ROUTE)) is not None:
            return refused
        try:
            items = parse_feedback(parse_json(await read_body(request, config.max_body_bytes)), max_rows)
        except RequestError as error:
            return json_response(error.status, error.body)
        if (refused := auth.limit_feedback(request, FEEDBACK_ROUTE, len(items))) is not None:
            return refused
        # The captures of responses already sent may still be on their way to the writer.
        await state.wait_captures_queued(FEEDBACK_CAPTURE_WAIT_SECONDS)
        try:
            receipt = await run_in_threadpool(state.store.record_feedback, items, token_id=request.state.token_id)
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
        summary="Readiness: a model version is loaded; which one, and which one the alias names",
        description=(
            "200 once a version is served. `serving_version` is the version scoring requests (also "
            "`model_version`); `champion_version` the version the followed alias (`follows`) pointed to when the "
            "registry last answered (`alias_checked_at`); when they differ, `mismatch_reason` says why (the "
            "version is loading, or was refused: the error, the attempt and when it is tried again). "
            "Degraded: when no version could be loaded and `fallback_on_no_model` is on, 200 with `\"degraded\": true` "
            "and `model_version` `fallback` — predictions come from the heuristic baseline, each flagged "
            "`\"fallback\": true` (a load balancer keeps sending traffic; switch the fallback off to get 503 instead). "
            "During a safe rollout: `challenger_version`, `rollout` (shadow | canary), `rollout_share` and, when the "
            "challenger could not be loaded, `challenger_problem` (the champion then answers alone). `pid`: the "
            "process that answered (with `serve --workers N`, each worker loads and reports on its own)."
        ),
        tags=["operations"],
        responses={503: {"model": MessageResponse, "description": "No model loaded yet."}},
    )
    async def ready() -> Response:
        served = state.manager.current
        status = state.manager.status()
        versions = {
            "serving_version": status.serving_version,
            "champion_version": status.target_version,
            "serving_matches_champion": None if status.target_version is None else not status.differs,
            "mismatch_reason": status.reason,
            "alias_checked_at": status.checked_at.isoformat() if status.checked_at else None,
            "next_load_attempt_at": status.refusal.next_attempt_at.isoformat() if status.refusal else None,
            **_rollout_status(state),
            "pid": os.getpid(),  # which process answered: with `serve --workers N`, one of N
        }
        if served is None and state.fallback_in_use():
            return json_response(200, {
                "detail": f"degraded: answering from the fallback baseline ({state.fallback.model_uri}) because "
                          f"{_not_ready_message(state)}",
                "degraded": True,
                "model_version": state.fallback.version,
                "model_uri": state.fallback.model_uri,
                "follows": state.manager.reference.uri,
                "last_poll_error": state.manager.last_error,
                **versions,
                **capture_readiness(state),
            })
        if served is None:
            fallback = {"fallback_unavailable": state.fallback_problem} if state.fallback_problem else {}
            return json_response(503, {"detail": _not_ready_message(state), **versions, **fallback})
        return json_response(200, {
            "detail": "ready",
            "degraded": False,
            "model_version": served.version,
            "model_uri": served.model_uri,
            "follows": state.manager.reference.uri,
            "loaded_at": served.loaded_at.isoformat(),
            "last_poll_error": state.manager.last_error,
            **versions,
            **capture_readiness(state),
        })

    @app.get("/metrics", summary="Prometheus metrics", tags=["operations"], response_class=Response)
    async def metrics(request: Request) -> Response:
        if (refused := auth.refuse(request, "/metrics")) is not None:
            return refused
        return Response(state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    async def root() -> Response:
        return RedirectResponse("/docs")


def _rollout_status(state: ServerState) -> dict:
    """The challenger served beside the champion (safe rollout), or why the alias's version is not."""
    follower = state.manager.challenger
    if follower is None:
        return {}
    rollout = follower.current
    return {
        "challenger_version": rollout.served.version if rollout else None,
        "rollout": rollout.mode if rollout else None,
        "rollout_share": rollout.share if rollout else None,
        "challenger_problem": follower.problem,
    }


def _not_ready_message(state: ServerState) -> str:
    error = state.manager.last_error
    return f"no model loaded yet for {state.manager.reference.uri}" + (f": {error}" if error else " (loading)")


def _ids(error) -> str:
    shown = ", ".join(error.request_ids[:10])
    return shown + (f" and {len(error.request_ids) - 10} more" if len(error.request_ids) > 10 else "")
