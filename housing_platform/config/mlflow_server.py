"""The production profile's MLflow tracking server: how the platform reaches it and how it is started.

In production the platform talks to an ``mlflow server`` over HTTP (``HOUSING_MLFLOW_TRACKING_URI``),
never to MLflow's database: every host, run pod and model-server replica then needs only the
server's address, and the database credentials stay with the server. The server keeps runs and the
registry in PostgreSQL (``<db>_mlflow`` beside the Dagster database) and **serves the artifacts
itself** (``--serve-artifacts``): clients log and download through it (``mlflow-artifacts:/`` URIs)
and the server alone writes to the S3 bucket. That choice over clients writing to S3 directly:
a model-server replica or a batch-scoring job then needs no S3 credentials to load a model, the
bucket policy names one writer, and the artifacts (a model is a few hundred kB) are small enough
for the server to carry. Direct S3 stays possible: set ``HOUSING_MLFLOW_ARTIFACT_ROOT=s3://...``.

Plain Python (no Dagster, no MLflow import): :func:`tracking_server_uri` validates the setting, and
:func:`mlflow_server_command` renders the command line that starts a matching server (the tests
start exactly that; the deployment manifests in ``deploy/`` document the same flags).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

MLFLOW_TRACKING_URI_ENV = "HOUSING_MLFLOW_TRACKING_URI"
MLFLOW_ARTIFACT_ROOT_ENV = "HOUSING_MLFLOW_ARTIFACT_ROOT"
# Artifacts proxied by the tracking server: a client resolves this against the tracking URI.
PROXIED_ARTIFACT_ROOT = "mlflow-artifacts:/"
TRACKING_SERVER_SCHEMES = ("http", "https")
# MLflow's own variables for the server's credentials: the URI must not carry them (it is shown in
# the Dagster UI as resource config and in logs).
CREDENTIAL_VARIABLES = "MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN"


# Environment of the server process: MLflow's GenAI job executor spawns worker processes at start
# (doubling its start time on a small machine) for features the platform does not use.
MLFLOW_SERVER_ENVIRONMENT = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


class TrackingServerError(ValueError):
    """``HOUSING_MLFLOW_TRACKING_URI`` breaks a rule; the message names the variable, the rule and the value."""


def is_tracking_server(uri: str) -> bool:
    """True for an ``http(s)://`` MLflow tracking server (as opposed to a database or a folder)."""
    return urlsplit(uri).scheme.lower() in TRACKING_SERVER_SCHEMES


def tracking_server_uri(environ: Mapping[str, str]) -> str | None:
    """The validated ``HOUSING_MLFLOW_TRACKING_URI`` without a trailing slash, or None when unset or empty."""
    raw = (environ.get(MLFLOW_TRACKING_URI_ENV) or "").strip()
    if not raw:
        return None
    try:
        parts = urlsplit(raw)
        port = parts.port  # raises ValueError on a port that is not a number in range
    except ValueError as error:
        raise TrackingServerError(f"{MLFLOW_TRACKING_URI_ENV} is not a URL ({error}); got {raw!r}") from None
    if parts.scheme.lower() not in TRACKING_SERVER_SCHEMES or not parts.hostname:
        raise TrackingServerError(
            f"{MLFLOW_TRACKING_URI_ENV} must be the http:// or https:// address of an `mlflow server` "
            f"(e.g. http://mlflow:5000); got {raw!r}"
        )
    if parts.username or parts.password:
        shown = raw.replace(parts.netloc, f"***@{parts.hostname}{f':{port}' if port else ''}")
        raise TrackingServerError(
            f"{MLFLOW_TRACKING_URI_ENV} must not carry credentials (they would show in the Dagster UI and logs); "
            f"set {CREDENTIAL_VARIABLES}; got {shown!r}"
        )
    if parts.query or parts.fragment:
        raise TrackingServerError(f"{MLFLOW_TRACKING_URI_ENV} must not have a query or fragment; got {raw!r}")
    return raw.rstrip("/")


def mlflow_server_command(
    backend_store_uri: str,
    artifacts_destination: str,
    *,
    host: str,
    port: int,
    workers: int = 1,
    executable: str = "mlflow",
) -> list[str]:
    """``mlflow server`` for the production profile: PostgreSQL backend store, proxied S3 artifacts.

    ``backend_store_uri`` must carry no password (libpq reads ``PGPASSWORD``, which
    ``apply_production_environment`` sets); the S3 endpoint and credentials come from the
    environment (``MLFLOW_S3_ENDPOINT_URL``, boto3's chain), never from the command line. Run it
    with :data:`MLFLOW_SERVER_ENVIRONMENT` added to the environment.
    """
    return [
        executable, "server",
        "--backend-store-uri", backend_store_uri,
        "--serve-artifacts",
        "--artifacts-destination", artifacts_destination,
        "--host", host,
        "--port", str(port),
        "--workers", str(workers),
    ]
