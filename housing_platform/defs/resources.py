"""Typed Dagster resources wrapping the plain settings, so assets never read globals or env vars."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field

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
