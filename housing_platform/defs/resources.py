"""Typed Dagster resources wrapping the plain settings, so assets never read globals or env vars."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from housing_platform.config.profiles import (
    PRODUCTION,
    ProductionSettings,
    active_profile,
    apply_production_environment,
)
from housing_platform.config.settings import HousingSettings


class HousingStateResource(dg.ConfigurableResource):
    """The state folder and the data file: where assets read inputs and write their files."""

    home: str = Field(description="State folder (HOUSING_HOME); every file the platform writes lives here.")
    data_path: str = Field(description="District CSV read by `raw_housing_data` (HOUSING_DATA_PATH).")

    @classmethod
    def from_settings(cls, settings: HousingSettings) -> "HousingStateResource":
        return cls(home=str(settings.home), data_path=str(settings.data_path))

    @property
    def settings(self) -> HousingSettings:
        return HousingSettings(home=Path(self.home), data_path=Path(self.data_path))

    def folder(self, *parts: str) -> Path:
        """A sub-folder of the state folder, created on first use."""
        path = Path(self.home).joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path


class MLflowResource(dg.ConfigurableResource):
    """MLflow tracking and model registry (SQLite + local artifacts in the state folder by default)."""

    tracking_uri: str = Field(description="MLflow tracking and registry URI (MLFLOW_TRACKING_URI).")
    artifact_root: str = Field(description="Where experiments store artifacts (HOUSING_MLFLOW_ARTIFACT_ROOT).")
    ui_url: str = Field("http://127.0.0.1:5000", description="Base URL of the MLflow UI, for links in metadata.")
    model_name: str = Field("housing_price_model", description="Registered model name.")

    @classmethod
    def from_settings(cls, settings: HousingSettings) -> "MLflowResource":
        return cls(
            tracking_uri=settings.mlflow_tracking_uri,
            artifact_root=settings.mlflow_artifact_root,
            ui_url=settings.mlflow_ui_url,
        )

    def registry(self):
        from housing_platform.adapters.mlflow_registry import ModelRegistry

        return ModelRegistry(self.tracking_uri, self.artifact_root, model_name=self.model_name, ui_url=self.ui_url)


class CaptureStoreResource(dg.ConfigurableResource):
    """The capture store the model server writes scored rows and feedback to (HOUSING_CAPTURE_URL)."""

    url: str = Field(description="SQLAlchemy URL of the capture store.")

    @classmethod
    def from_settings(cls, settings: HousingSettings) -> "CaptureStoreResource":
        return cls(url=settings.capture_url)

    def store(self):
        from housing_platform.adapters.capture.store import CaptureStore

        return CaptureStore(self.url)


# -- one resource set per deployment profile (same keys in each) -----------------------------------
def embedded_resources(settings: HousingSettings) -> dict[str, Any]:
    """Everything in the state folder: SQLite for MLflow and captures, asset values as local files."""
    from housing_platform.defs.io_manager import ParquetJsonIOManager

    return {
        "housing_state": HousingStateResource.from_settings(settings),
        "mlflow_tracking": MLflowResource.from_settings(settings),
        "capture_store": CaptureStoreResource.from_settings(settings),
        "io_manager": ParquetJsonIOManager(base_dir=str(settings.storage_dir)),
    }


def production_resources(settings: ProductionSettings) -> dict[str, Any]:
    """PostgreSQL for MLflow and captures, S3 for asset values (credentials from boto3's own chain)."""
    from dagster_aws.s3 import S3Resource

    from housing_platform.defs.io_manager import ParquetJsonIOManager

    s3 = S3Resource(endpoint_url=settings.s3_endpoint_url, region_name=settings.aws_region)
    return {
        "housing_state": HousingStateResource.from_settings(settings.housing),
        "mlflow_tracking": MLflowResource(
            tracking_uri=settings.mlflow_tracking_uri,
            artifact_root=settings.mlflow_artifact_root,
            ui_url=settings.housing.mlflow_ui_url,
        ),
        "capture_store": CaptureStoreResource(url=settings.capture_url),
        "io_manager": ParquetJsonIOManager(base_dir=settings.storage_uri, s3=s3),
    }


def resources_for_profile(settings: HousingSettings) -> dict[str, Any]:
    """The resource set of the profile ``HOUSING_PROFILE`` names (``embedded`` unless set)."""
    if active_profile() == PRODUCTION:
        production = ProductionSettings.from_env(settings)
        apply_production_environment(production)
        return production_resources(production)
    return embedded_resources(settings)
