"""housing_platform: an ML platform for house-price prediction, built as a Dagster asset graph.

Layers, each a folder (see ``docs/architecture.md``): ``core`` (domain logic), ``scoring`` (the
numpy fast path), ``adapters`` (MLflow registry, capture store), ``config`` (settings, profiles),
``defs`` (the Dagster layer), ``server`` (the FastAPI model server), ``cli`` and ``devtools``.
"""

from housing_platform.config.environment import disable_telemetry

# Before MLflow, Evidently or Dagster can be imported through this package: their telemetry is off
# unless the user has chosen otherwise (every variable is only set when unset).
disable_telemetry()
