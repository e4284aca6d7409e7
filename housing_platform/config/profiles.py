"""Deployment profiles: where the platform keeps its state, chosen by ``HOUSING_PROFILE``.

* ``embedded`` (default): everything in the state folder (``HOUSING_HOME``): Dagster on SQLite,
  MLflow on SQLite + local artifacts, the capture store on SQLite, asset values as local files.
  :mod:`housing_platform.config.settings` describes it.
* ``production``: the Dagster instance, MLflow tracking/registry and the capture store on
  PostgreSQL; asset values and MLflow artifacts on S3 (AWS, or any S3 API such as MinIO through
  ``HOUSING_S3_ENDPOINT_URL``). With ``HOUSING_MLFLOW_TRACKING_URI`` the platform reaches MLflow
  through an ``mlflow server`` over HTTP instead of its database (``config/mlflow_server.py``).
  Quarantined rows, reports, plots, the fallback baseline and model files between steps go to
  ``s3://<bucket>/<prefix>/`` too (``files_uri``); the state folder keeps only
  scratch files and host-local setup (``dagster.yaml``, the server's token file).

The first half is plain Python (pydantic, SQLAlchemy URL parsing, YAML): the CLI reads it to write
``dagster.yaml`` and create the databases. Nothing here imports Dagster: the production resource
set is built in ``housing_platform/defs/resources.py``.

No password is written anywhere by this module: ``HOUSING_POSTGRES_URL`` must not carry one (it is
refused), ``HOUSING_POSTGRES_PASSWORD`` holds it, ``dagster.yaml`` refers to that variable by name,
and :func:`apply_production_environment` hands it to libpq as ``PGPASSWORD`` for MLflow and the
capture store, so neither the config file nor the resource config in the Dagster UI shows it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, SecretStr
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from housing_platform.config.dagster_yaml import PRODUCTION_NOTE, render_dagster_yaml, write_dagster_yaml
from housing_platform.config.mlflow_server import (
    MLFLOW_ARTIFACT_ROOT_ENV,
    PROXIED_ARTIFACT_ROOT,
    TrackingServerError,
    is_tracking_server,
    tracking_server_uri,
)
from housing_platform.config.settings import HousingSettings

PROFILE_ENV = "HOUSING_PROFILE"
EMBEDDED = "embedded"
PRODUCTION = "production"
PROFILES = (EMBEDDED, PRODUCTION)

POSTGRES_URL_ENV = "HOUSING_POSTGRES_URL"
POSTGRES_PASSWORD_ENV = "HOUSING_POSTGRES_PASSWORD"
S3_BUCKET_ENV = "HOUSING_S3_BUCKET"
S3_PREFIX_ENV = "HOUSING_S3_PREFIX"
S3_ENDPOINT_ENV = "HOUSING_S3_ENDPOINT_URL"
DEFAULT_S3_PREFIX = "housing"
# MLflow and Dagster both keep an `alembic_version` table, so they cannot share one database.
MLFLOW_DATABASE_SUFFIX = "_mlflow"
EXAMPLE_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/housing"
POSTGRES_DRIVER = "postgresql+psycopg2"
COMPUTE_LOGS_FOLDER = "compute-logs"  # step logs under s3://<bucket>/<prefix>/compute-logs



# Where a run's steps execute: in the run's own process (the default: TensorFlow's import is paid
# once per run), or each step in a Kubernetes pod of its own (dagster-k8s's k8s_job_executor; needs
# the `k8s` extra, installed in deploy/docker/user-code.Dockerfile).
EXECUTOR_ENV = "HOUSING_EXECUTOR"
IN_PROCESS_EXECUTOR = "in_process"
K8S_JOB_EXECUTOR = "k8s_job"
EXECUTORS = (IN_PROCESS_EXECUTOR, K8S_JOB_EXECUTOR)


class ProfileConfigurationError(ValueError):
    """A profile environment variable is missing or breaks a rule; the message names both."""


def active_profile(environ: Mapping[str, str] | None = None) -> str:
    """``embedded`` or ``production``, from ``HOUSING_PROFILE`` (unset or empty means ``embedded``)."""
    environ = os.environ if environ is None else environ
    profile = (environ.get(PROFILE_ENV) or EMBEDDED).strip().lower()
    if profile not in PROFILES:
        raise ProfileConfigurationError(
            f"{PROFILE_ENV} must be one of {', '.join(PROFILES)}; got {environ.get(PROFILE_ENV)!r}"
        )
    return profile


def active_executor(environ: Mapping[str, str] | None = None) -> str:
    """``in_process`` or ``k8s_job``, from ``HOUSING_EXECUTOR`` (unset or empty means ``in_process``)."""
    environ = os.environ if environ is None else environ
    executor = (environ.get(EXECUTOR_ENV) or IN_PROCESS_EXECUTOR).strip().lower()
    if executor not in EXECUTORS:
        raise ProfileConfigurationError(
            f"{EXECUTOR_ENV} must be one of {', '.join(EXECUTORS)}; got {environ.get(EXECUTOR_ENV)!r}"
        )
    return executor


class ProductionSettings(BaseModel):
    """Where the production profile keeps its state. Build it with :meth:`from_env`."""

    housing: HousingSettings = Field(description="State folder (scratch files, dagster.yaml) and data file.")
    postgres_url: str = Field(description="PostgreSQL database of the Dagster instance, without password.")
    postgres_password: SecretStr | None = Field(None, description="Password of the PostgreSQL user, if any.")
    mlflow_tracking_uri: str = Field(
        description="MLflow tracking and registry: an `mlflow server` (http://) or its PostgreSQL database."
    )
    mlflow_artifact_root: str = Field(description="Where MLflow experiments keep their artifacts.")
    mlflow_backend_store_uri: str = Field(
        description="The `<db>_mlflow` database: the backend store of the profile's `mlflow server`, or the "
        "tracking store itself when there is no server."
    )
    mlflow_artifacts_destination: str = Field(
        description="Where MLflow artifacts land in the bucket (the server's `--artifacts-destination`)."
    )
    mlflow_ui_url: str = Field(
        description="Base of the MLflow links in Dagster metadata: the tracking server itself unless "
        "HOUSING_MLFLOW_UI_URL says otherwise."
    )
    capture_url: str = Field(description="SQLAlchemy URL of the capture store.")
    s3_bucket: str = Field(description="Bucket for asset values and MLflow artifacts.")
    s3_prefix: str = Field(DEFAULT_S3_PREFIX, description="Key prefix inside the bucket, without slashes.")
    s3_endpoint_url: str | None = Field(None, description="S3 API endpoint (MinIO, moto); None means AWS.")
    aws_region: str | None = Field(None, description="AWS region of the bucket.")

    @classmethod
    def from_env(
        cls, housing: HousingSettings | None = None, environ: Mapping[str, str] | None = None
    ) -> "ProductionSettings":
        environ = os.environ if environ is None else environ
        housing = housing or HousingSettings.from_env()
        url = _postgres_url(environ.get(POSTGRES_URL_ENV, ""))
        bucket = (environ.get(S3_BUCKET_ENV) or "").strip()
        if not bucket or "/" in bucket:
            raise ProfileConfigurationError(
                f"{S3_BUCKET_ENV} must name a bucket (no slashes) when {PROFILE_ENV}=production; got {bucket!r}"
            )
        prefix = (environ.get(S3_PREFIX_ENV) or DEFAULT_S3_PREFIX).strip("/")
        password = environ.get(POSTGRES_PASSWORD_ENV) or None
        mlflow_url = url.set(database=f"{url.database}{MLFLOW_DATABASE_SUFFIX}")
        try:
            server = tracking_server_uri(environ)
        except TrackingServerError as error:
            raise ProfileConfigurationError(str(error)) from None
        # HOUSING_MLFLOW_TRACKING_URI (an mlflow server) first; then the embedded profile's override
        # (MLFLOW_TRACKING_URI), so a separate MLflow database can still be chosen; then <db>_mlflow.
        tracking = server or _normalised_override(environ.get("MLFLOW_TRACKING_URI")) or _render(mlflow_url)
        destination = _join_s3(bucket, prefix, "mlflow")
        # Through a tracking server, artifacts go through it too (it writes them to `destination`).
        default_root = PROXIED_ARTIFACT_ROOT if is_tracking_server(tracking) else destination
        return cls(
            housing=housing,
            postgres_url=_render(url),
            postgres_password=SecretStr(password) if password else None,
            mlflow_tracking_uri=tracking,
            mlflow_artifact_root=environ.get(MLFLOW_ARTIFACT_ROOT_ENV) or default_root,
            mlflow_backend_store_uri=_render(mlflow_url),
            mlflow_artifacts_destination=destination,
            mlflow_ui_url=housing.mlflow_ui_url
            if "mlflow_ui_url" in housing.model_fields_set or not is_tracking_server(tracking)
            else tracking,
            capture_url=_normalised_override(environ.get("HOUSING_CAPTURE_URL")) or _render(url),
            s3_bucket=bucket,
            s3_prefix=prefix,
            s3_endpoint_url=environ.get(S3_ENDPOINT_ENV) or None,
            aws_region=environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or None,
        )

    @property
    def storage_prefix(self) -> str:
        """Key prefix of the asset values, the S3 twin of ``<state>/storage``."""
        return f"{self.s3_prefix}/storage" if self.s3_prefix else "storage"

    @property
    def storage_uri(self) -> str:
        return f"s3://{self.s3_bucket}/{self.storage_prefix}"

    @property
    def files_uri(self) -> str:
        """Root of the platform's files (quarantine, reports, plots, fallback baseline, model files between
        steps): ``s3://<bucket>/<prefix>``, each file at its state-folder path below it
        (``adapters/file_store.py``)."""
        return _join_s3(self.s3_bucket, self.s3_prefix)


def _postgres_url(raw: str) -> URL:
    raw = raw.strip()
    if not raw:
        raise ProfileConfigurationError(
            f"{POSTGRES_URL_ENV} is required when {PROFILE_ENV}=production (e.g. {EXAMPLE_POSTGRES_URL})"
        )
    try:
        url = make_url(raw)
    except ArgumentError:
        raise ProfileConfigurationError(
            f"{POSTGRES_URL_ENV} must be a URL like {EXAMPLE_POSTGRES_URL}; got {raw!r}"
        ) from None
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() != "postgresql":
        raise ProfileConfigurationError(f"{POSTGRES_URL_ENV} must be a postgresql:// URL; got {shown!r}")
    if url.password is not None:
        raise ProfileConfigurationError(
            f"{POSTGRES_URL_ENV} must not contain a password (it would end up in dagster.yaml and in the "
            f"resource config shown by Dagster); put it in {POSTGRES_PASSWORD_ENV}; got {shown!r}"
        )
    if not url.host or not url.username or not url.database:
        raise ProfileConfigurationError(
            f"{POSTGRES_URL_ENV} must name a user, a host and a database (e.g. {EXAMPLE_POSTGRES_URL}); got {shown!r}"
        )
    return _with_installed_driver(url)


def _with_installed_driver(url: URL) -> URL:
    """Pin a bare ``postgresql://`` to psycopg2, the driver the platform installs.

    SQLAlchemy 2.1 reads a bare ``postgresql://`` as psycopg (version 3), which is not installed, so
    Dagster, MLflow and the capture store would all fail to connect. A URL naming a driver is kept.
    """
    return url.set(drivername=POSTGRES_DRIVER) if url.drivername == "postgresql" else url


def _normalised_override(raw: str | None) -> str | None:
    if not raw:
        return None
    try:
        return _render(_with_installed_driver(make_url(raw)))
    except ArgumentError:
        return raw  # not a SQLAlchemy URL (e.g. an MLflow server's http:// address): passed on as is


def _render(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def _join_s3(bucket: str, *parts: str) -> str:
    return "s3://" + "/".join(part for part in (bucket, *parts) if part)


# -- the Dagster instance ---------------------------------------------------------------------------
def dagster_yaml_for_production(settings: ProductionSettings, dagster_home: str | Path) -> str:
    """``dagster.yaml`` for the production profile: dagster-postgres storage, S3 compute logs, telemetry off.

    Runs, event logs (materializations, check evaluations) and schedules all go to the database of
    ``HOUSING_POSTGRES_URL``; query parameters of that URL (``sslmode=require`` ...) are passed on.
    Step logs (stdout/stderr) go to ``s3://<bucket>/<prefix>/compute-logs`` (dagster-aws's
    ``S3ComputeLogManager``, staged under ``<dagster_home>/logs`` while a step runs), so a run on any
    host leaves them where every other host can read them. Local artifacts stay under ``dagster_home``.
    """
    url = make_url(settings.postgres_url)
    postgres_db: dict[str, Any] = {
        "hostname": url.host,
        "port": url.port or 5432,
        "username": url.username,
        "db_name": url.database,
        "scheme": url.drivername,  # the SQLAlchemy driver, see _with_installed_driver
    }
    if settings.postgres_password is not None:
        postgres_db["password"] = {"env": POSTGRES_PASSWORD_ENV}
    if url.query:
        postgres_db["params"] = {key: value for key, value in url.query.items()}
    compute_logs: dict[str, Any] = {
        "bucket": settings.s3_bucket,
        "prefix": f"{settings.s3_prefix}/{COMPUTE_LOGS_FOLDER}" if settings.s3_prefix else COMPUTE_LOGS_FOLDER,
        "local_dir": str(Path(dagster_home) / "logs"),
        "skip_empty_files": True,
    }
    if settings.s3_endpoint_url:
        compute_logs["endpoint_url"] = settings.s3_endpoint_url
    if settings.aws_region:
        compute_logs["region"] = settings.aws_region
    return render_dagster_yaml(
        {"postgres": {"postgres_db": postgres_db}}, dagster_home, profile=PRODUCTION, storage_note=PRODUCTION_NOTE,
        compute_logs={
            # Module paths are how dagster.yaml names classes (configuration, not imports).
            "module": "dagster_aws.s3.compute_log_manager",
            "class": "S3ComputeLogManager",
            "config": compute_logs,
        },
    )


def write_production_dagster_yaml(settings: ProductionSettings, dagster_home: str | Path | None = None) -> Path:
    """Write :func:`dagster_yaml_for_production` to ``<dagster_home>/dagster.yaml``; return the folder.

    ``dagster_home`` defaults to ``$HOUSING_HOME/dagster``, the folder the Makefile exports as
    ``DAGSTER_HOME`` (as for the embedded profile). The file is rewritten only when it changes.
    """
    home = Path(dagster_home) if dagster_home is not None else settings.housing.dagster_home
    return write_dagster_yaml(home, dagster_yaml_for_production(settings, home))


def ensure_production_databases(settings: ProductionSettings) -> list[str]:
    """Create the PostgreSQL databases the profile names and that do not exist yet; return their names.

    The Dagster database, the MLflow database (``<db>_mlflow`` by default) and the capture store's,
    each created through the ``postgres`` maintenance database of its server. Tables are created by
    Dagster, MLflow and the capture store themselves on first use.
    """
    from sqlalchemy import create_engine, text

    created: list[str] = []
    seen: set[tuple] = set()
    # The backend store is created even when MLflow is reached over HTTP: it is the database the
    # profile's `mlflow server` (config/mlflow_server.py) keeps its runs and registry in.
    for raw in (settings.postgres_url, settings.mlflow_tracking_uri, settings.mlflow_backend_store_uri, settings.capture_url):
        try:
            url = make_url(raw)
        except ArgumentError:
            continue
        if url.get_backend_name() != "postgresql" or not url.database:  # e.g. an http:// tracking server
            continue
        server = (url.host, url.port, url.username, url.database)
        if server in seen:
            continue
        seen.add(server)
        if url.password is None and settings.postgres_password is not None:
            url = url.set(password=settings.postgres_password.get_secret_value())
        engine = create_engine(
            url.set(database="postgres"), isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 10}
        )
        try:
            with engine.connect() as conn:
                exists = conn.execute(
                    text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": url.database}
                ).scalar()
                if not exists:
                    quoted = engine.dialect.identifier_preparer.quote_identifier(url.database)
                    conn.execute(text(f"CREATE DATABASE {quoted}"))
                    created.append(url.database)
        finally:
            engine.dispose()
    return created


# -- the process and the Dagster resources ---------------------------------------------------------
def apply_production_environment(settings: ProductionSettings) -> None:
    """Set the variables the libraries read themselves, unless the user already set them.

    * ``MLFLOW_S3_ENDPOINT_URL`` from ``HOUSING_S3_ENDPOINT_URL``: MLflow's S3 artifact store takes
      its endpoint only from there, so without it artifacts would go to AWS instead of MinIO/moto.
    * ``AWS_DEFAULT_REGION`` from ``AWS_REGION``, for boto3 clients that MLflow creates.
    * ``PGPASSWORD`` from ``HOUSING_POSTGRES_PASSWORD``, for libpq connections whose URL has none
      (MLflow and the capture store).

    Call it in every process that uses the profile (``build_definitions`` does in the code location
    and in run workers).
    """
    if settings.s3_endpoint_url:
        os.environ.setdefault("MLFLOW_S3_ENDPOINT_URL", settings.s3_endpoint_url)
    if settings.aws_region:
        os.environ.setdefault("AWS_DEFAULT_REGION", settings.aws_region)
    if settings.postgres_password is not None:
        os.environ.setdefault("PGPASSWORD", settings.postgres_password.get_secret_value())
