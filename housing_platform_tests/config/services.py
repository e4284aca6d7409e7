"""Real services for the production-profile tests, all on loopback: the profile's environment, an `mlflow server`.

:func:`production_profile` points ``HOUSING_PROFILE=production`` at a fresh PostgreSQL database pair
and a bucket on moto (``conftest.py``), and restores the environment and drops the databases
afterwards. :class:`MlflowTrackingServer` starts ``mlflow server`` with the command line the profile
renders (``config.mlflow_server``), on a free loopback port, and stops it by PID.
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine, text

from housing_platform.config.mlflow_server import MLFLOW_SERVER_ENVIRONMENT, mlflow_server_command
from housing_platform.config.profiles import (
    ProductionSettings,
    apply_production_environment,
    ensure_production_databases,
)
from housing_platform.devtools.processes import LoopbackService, http_ok, wait_until
from housing_platform_tests.factories import make_districts

# A fresh PostgreSQL backend store runs MLflow's schema migrations on start: a few seconds here.
MLFLOW_START_SECONDS = 60.0


def s3_client():
    import boto3

    return boto3.client("s3", endpoint_url=os.environ["HOUSING_S3_ENDPOINT_URL"], region_name="us-east-1")


def bucket_keys(bucket: str, prefix: str) -> set[str]:
    pages = s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {item["Key"] for page in pages for item in page.get("Contents", [])}


@contextlib.contextmanager
def production_profile(
    postgres_server: str, moto_endpoint: str, home: Path, *, bucket: str, prefix: str, **extra: str
) -> Iterator[ProductionSettings]:
    """HOUSING_PROFILE=production on a fresh database pair and bucket; ``extra`` adds variables."""
    saved = dict(os.environ)
    database = f"housing_test_{uuid.uuid4().hex[:10]}"
    data_path = home / "districts.csv"
    make_districts(1_200).to_csv(data_path, index=False)
    for name in (
        "MLFLOW_TRACKING_URI", "HOUSING_MLFLOW_TRACKING_URI", "HOUSING_MLFLOW_ARTIFACT_ROOT", "HOUSING_CAPTURE_URL",
        "MLFLOW_S3_ENDPOINT_URL", "HOUSING_POSTGRES_PASSWORD", "PGPASSWORD", "AWS_PROFILE", "AWS_SESSION_TOKEN",
    ):
        os.environ.pop(name, None)
    os.environ.update(
        {
            "HOUSING_PROFILE": "production",
            "HOUSING_HOME": str(home),
            "HOUSING_DATA_PATH": str(data_path),
            "HOUSING_POSTGRES_URL": f"postgresql://postgres@127.0.0.1:5432/{database}",
            "HOUSING_S3_BUCKET": bucket,
            "HOUSING_S3_PREFIX": prefix,
            "HOUSING_S3_ENDPOINT_URL": moto_endpoint,
            "AWS_REGION": "us-east-1",
            # moto accepts any credentials; these keep boto3 away from ~/.aws and the metadata service.
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_CONFIG_FILE": str(home / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            **extra,
        }
    )
    try:
        settings = ProductionSettings.from_env()
        assert sorted(ensure_production_databases(settings)) == [database, f"{database}_mlflow"]
        assert ensure_production_databases(settings) == []  # idempotent
        apply_production_environment(settings)
        s3_client().create_bucket(Bucket=bucket)
        yield settings
    finally:
        os.environ.clear()
        os.environ.update(saved)
        engine = create_engine(f"{postgres_server}/postgres", isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            for name in (database, f"{database}_mlflow"):
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


class MlflowTrackingServer(LoopbackService):
    """``mlflow server`` as the production profile runs it (``config.mlflow_server.mlflow_server_command``)."""

    name = "mlflow-server"
    own_process_group = True  # its uvicorn workers are children: the stop reaches them too

    def __init__(self, home: Path, settings: ProductionSettings, port: int):
        super().__init__(home, port=port)
        self.settings = settings

    def command(self) -> list[str]:
        return mlflow_server_command(
            self.settings.mlflow_backend_store_uri,
            self.settings.mlflow_artifacts_destination,
            host="127.0.0.1",
            port=self.port,
            executable=str(Path(sys.executable).with_name("mlflow")),
        )

    def environment(self) -> dict[str, str]:
        return {**os.environ, **MLFLOW_SERVER_ENVIRONMENT}

    def wait_ready(self, timeout_seconds: float = MLFLOW_START_SECONDS) -> object:
        return wait_until(http_ok(f"{self.url}/health"), what="mlflow server", timeout_seconds=timeout_seconds,
                          interval_seconds=0.2, process=self.process, log_path=self.log_path)
