"""The settings a process uses, for the active profile: one function every entry point calls.

:class:`~housing_platform.config.settings.HousingSettings` describes the embedded profile; in the
production profile (``HOUSING_PROFILE=production``) the MLflow tracking server, its artifact root and
the PostgreSQL capture store come from :class:`~housing_platform.config.profiles.ProductionSettings`.
:func:`process_settings` returns a ``HousingSettings`` in both cases, with those three locations (and
the MLflow UI base) taken from the profile, so the server, batch scoring and the operator commands
(``serve``, ``score``, ``simulate``, ``rollout``, ``versions``, ``labels``) read one profile the same
way and need no per-variable overrides. In production it also applies
:func:`~housing_platform.config.profiles.apply_production_environment` (S3 endpoint, region,
``PGPASSWORD`` for libpq) before anything connects.

A misconfigured production profile raises :class:`~housing_platform.config.profiles.ProfileConfigurationError`
naming the variable: never a silent fallback to the state folder's SQLite stores, which would serve
(or capture into) an empty registry on a replica whose environment lost a variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from housing_platform.config.profiles import (
    PRODUCTION,
    ProductionSettings,
    active_profile,
    apply_production_environment,
)
from housing_platform.config.settings import HousingSettings


def process_settings(environ: Mapping[str, str] | None = None) -> HousingSettings:
    """``HousingSettings`` for the active profile (see the module docstring); raises ``ProfileConfigurationError``.

    ``environ`` defaults to ``os.environ``; the state folder and the embedded fields are always read
    from the process environment (pydantic-settings), the profile's variables from ``environ``.
    """
    environ = os.environ if environ is None else environ
    housing = HousingSettings.from_env()
    if active_profile(environ) != PRODUCTION:
        return housing
    production = ProductionSettings.from_env(housing, environ)
    apply_production_environment(production)
    return housing.model_copy(
        update={
            "mlflow_tracking_uri": production.mlflow_tracking_uri,
            "mlflow_artifact_root": production.mlflow_artifact_root,
            "mlflow_ui_url": production.mlflow_ui_url,
            "capture_url": production.capture_url,
        }
    )
