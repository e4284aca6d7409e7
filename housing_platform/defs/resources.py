"""Typed Dagster resources wrapping the plain settings, so assets never read globals or env vars."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from housing_platform.config.profiles import (
    K8S_JOB_EXECUTOR,
    PRODUCTION,
    ProductionSettings,
    ProfileConfigurationError,
    active_executor,
    active_profile,
    apply_production_environment,
)
from housing_platform.config.raw_source import RawSource
from housing_platform.config.settings import HousingSettings


class HousingStateResource(dg.ConfigurableResource):
    """The state folder and the data file: where assets read inputs and write their files."""

    home: str = Field(description="State folder (HOUSING_HOME): the platform's files in the embedded profile, "
                      "scratch copies in the production one (files_uri).")
    data_path: str = Field(description="District CSV read by `raw_housing_data` (HOUSING_DATA_PATH).")
    raw_uri: str = Field("", description="Where `raw_housing_data` reads instead (HOUSING_RAW__URI).")
    raw_table: str = Field("", description="With a database raw source: the table (HOUSING_RAW__TABLE).")
    raw_query: str = Field("", description="With a database raw source: the query (HOUSING_RAW__QUERY).")
    s3_endpoint_url: str | None = Field(
        None, description="S3 API endpoint for an s3:// raw source and files_uri; None: boto3's own."
    )
    s3_region: str | None = Field(None, description="Region for an s3:// raw source and files_uri; None: boto3's own.")
    files_uri: str = Field(
        "", description="Where quarantine, reports, plots, the fallback baseline and model files go: empty for the "
        "state folder (embedded profile), s3://<bucket>/<prefix> in the production profile."
    )

    @classmethod
    def from_settings(cls, settings: HousingSettings, **extra: str | None) -> "HousingStateResource":
        raw = settings.raw
        return cls(
            home=str(settings.home), data_path=str(settings.data_path),
            raw_uri=raw.uri, raw_table=raw.table, raw_query=raw.query, **extra,
        )

    def files(self):
        """The platform's file store (``adapters/file_store.py``): the state folder or the bucket."""
        from housing_platform.adapters.file_store import open_file_store

        return open_file_store(self.files_uri, self.home, endpoint_url=self.s3_endpoint_url, region=self.s3_region)

    @property
    def raw_source(self) -> RawSource:
        """The raw-source settings, checked again (the resource config can be edited in the launchpad)."""
        return RawSource(uri=self.raw_uri, table=self.raw_table, query=self.raw_query)

    def s3_client(self):
        """A boto3 S3 client through dagster-aws's S3Resource (credentials from boto3's own chain)."""
        from dagster_aws.s3 import S3Resource

        return S3Resource(endpoint_url=self.s3_endpoint_url, region_name=self.s3_region).get_client()

    @property
    def settings(self) -> HousingSettings:
        return HousingSettings(home=Path(self.home), data_path=Path(self.data_path))


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
        "housing_state": HousingStateResource.from_settings(
            settings.housing, s3_endpoint_url=settings.s3_endpoint_url, s3_region=settings.aws_region,
            files_uri=settings.files_uri,
        ),
        "mlflow_tracking": MLflowResource(
            tracking_uri=settings.mlflow_tracking_uri,
            artifact_root=settings.mlflow_artifact_root,
            ui_url=settings.mlflow_ui_url,
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


def executor_for_environment():
    """The executor ``HOUSING_EXECUTOR`` names: one process per run (default), or a pod per step."""
    if active_executor() != K8S_JOB_EXECUTOR:
        return dg.in_process_executor
    try:
        from dagster_k8s import k8s_job_executor
    except ImportError:
        raise ProfileConfigurationError(
            "HOUSING_EXECUTOR=k8s_job needs dagster-k8s: install the `k8s` extra (pip install 'housing_platform[k8s]')"
        ) from None
    return k8s_job_executor
