"""The real-time model server: FastAPI on uvicorn, scoring through :mod:`housing_platform.scoring.scorer`.

* :mod:`~housing_platform.server.app` — ``create_app(config)``: wiring, middleware and the lifespan
  (model manager, capture writer).
* :mod:`~housing_platform.server.routes` — the route handlers.
* :mod:`~housing_platform.server.state` — what the routes share, and the capture of answered requests.
* :mod:`~housing_platform.server.requests` — request parsing and validation derived from
  :func:`housing_platform.core.schema.column_rules`; error bodies name the row, field and rule.
* :mod:`~housing_platform.server.model_manager` — loads the version an alias points at, polls the
  alias and swaps atomically; a version it refuses keeps the old one serving, is retried after an
  exponential back-off, and its reason is on ``/ready``.
* :mod:`~housing_platform.server.metrics` — the Prometheus registry of one app.

Nothing here imports Dagster. Run it with ``housing-platform serve`` (or ``make serve``).
"""

from housing_platform.server.server_config import ServingConfig

__all__ = ["ServingConfig", "create_app"]


def create_app(config: ServingConfig | None = None, **kwargs):
    """See :func:`housing_platform.server.app.create_app` (imported lazily: FastAPI is not free)."""
    from housing_platform.server.app import create_app as _create_app

    return _create_app(config, **kwargs)
