"""The FastAPI app of the model server (docs at ``/docs``): :func:`create_app` wires the shared
:class:`~housing_platform.server.state.ServerState`, the routes of :mod:`~housing_platform.server.routes`,
the metrics middleware and a 500 handler that logs the error without showing it, and the lifespan that
starts the model manager and capture writer. At shutdown (SIGTERM) uvicorn finishes in-flight
requests, the lifespan waits for the captures of answered requests to reach the writer, then closes
it, which flushes every queued row.
"""

from __future__ import annotations

import logging
import uuid
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect

from housing_platform.adapters.capture.store import CaptureStore
from housing_platform.server.metrics import MetricsMiddleware
from housing_platform.server.routes import ROUTES, add_routes, json_response
from housing_platform.server.server_config import ServingConfig
from housing_platform.server.state import ServerState

logger = logging.getLogger(__name__)


def create_app(
    config: ServingConfig | None = None,
    *,
    capture_store: CaptureStore | None = None,
    registry_factory=None,
    loader=None,
    on_stopped=None,
) -> FastAPI:
    """The model server. Threads (model polling, capture writing) start with the app's lifespan.

    ``capture_store`` (default: a store at ``config.capture_url``), ``registry_factory`` (default: a
    :class:`~housing_platform.adapters.mlflow_registry.ModelRegistry` at ``config.tracking_uri``) and ``loader``
    (default: :func:`housing_platform.scoring.verification.load_fast_scorer`) are injectable for tests.
    ``on_stopped(state)`` runs at the end of the lifespan, after the capture flush (a worker of
    ``serve --workers N`` exits non-zero there when rows were lost: ``server/workers.py``).
    """
    config = config or ServingConfig.from_settings()
    state = ServerState(config, capture_store, registry_factory, loader, routes=ROUTES)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.start()
        try:
            yield
        finally:
            await state.drain_captures()
            state.stop()
            if on_stopped is not None:
                on_stopped(state)

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

    @app.exception_handler(ClientDisconnect)
    async def client_left(request: Request, error: ClientDisconnect) -> Response:
        # The client closed the connection, or its body missed the read deadline (server/http_protocol.py)
        # and the server closed it: no answer can be sent, and it is not a bug of ours to log as one.
        logger.info("client disconnected before its request body was read: %s %s", request.method, request.url.path)
        return Response(status_code=408, headers={"connection": "close"})

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception) -> Response:
        error_id = uuid.uuid4().hex
        logger.exception("unhandled error %s on %s %s", error_id, request.method, request.url.path)
        # uvicorn closes the connection after an unhandled error; saying so lets a keep-alive client
        # open a new one for its next request instead of writing into a closed socket.
        response = json_response(500, {"detail": "internal server error; it has been logged", "error_id": error_id})
        response.headers["connection"] = "close"
        return response

    add_routes(app, state)
    return app


__all__ = ["create_app"]
