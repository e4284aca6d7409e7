"""``process_settings``: the settings a process uses for the active profile, and the CLI's answer to a broken profile.

No service is needed: the production profile's settings are derived from its variables, and a
misconfigured profile must stop `serve`, `score` and `simulate` before they connect to anything.
"""

from __future__ import annotations

import os

import pytest

from housing_platform.config.profiles import ProfileConfigurationError
from housing_platform.config.runtime import process_settings
from housing_platform.config.settings import HousingSettings

PRODUCTION_VARIABLES = (
    "HOUSING_PROFILE", "HOUSING_POSTGRES_URL", "HOUSING_POSTGRES_PASSWORD", "HOUSING_S3_BUCKET", "HOUSING_S3_PREFIX",
    "HOUSING_S3_ENDPOINT_URL", "HOUSING_MLFLOW_TRACKING_URI", "HOUSING_MLFLOW_ARTIFACT_ROOT", "HOUSING_CAPTURE_URL",
    "MLFLOW_TRACKING_URI", "MLFLOW_S3_ENDPOINT_URL", "PGPASSWORD", "AWS_REGION", "AWS_DEFAULT_REGION",
)


@pytest.fixture
def clean_environment(tmp_path, monkeypatch):
    """No profile variable set; the state folder in the test's temp folder. The whole environment is
    restored afterwards: ``apply_production_environment`` sets variables itself (PGPASSWORD ...)."""
    saved = dict(os.environ)
    for name in PRODUCTION_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOUSING_HOME", str(tmp_path / "state"))
    yield monkeypatch
    os.environ.clear()
    os.environ.update(saved)


def test_embedded_profile_is_the_state_folders_settings(clean_environment, tmp_path):
    settings = process_settings()
    assert settings == HousingSettings.from_env()
    assert settings.capture_url == f"sqlite:///{tmp_path / 'state' / 'capture' / 'capture.db'}"
    assert settings.mlflow_tracking_uri.startswith("sqlite:///")


def test_production_profile_takes_tracking_server_artifacts_and_postgres_capture_store(clean_environment, tmp_path):
    monkeypatch = clean_environment
    monkeypatch.setenv("HOUSING_PROFILE", "production")
    monkeypatch.setenv("HOUSING_POSTGRES_URL", "postgresql://housing@db.internal:5432/housing")
    monkeypatch.setenv("HOUSING_POSTGRES_PASSWORD", "s3cret")
    monkeypatch.setenv("HOUSING_S3_BUCKET", "bucket")
    monkeypatch.setenv("HOUSING_S3_ENDPOINT_URL", "http://minio.internal:9000")
    monkeypatch.setenv("HOUSING_MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")

    settings = process_settings()

    assert settings.mlflow_tracking_uri == "http://mlflow.internal:5000"
    assert settings.mlflow_artifact_root == "mlflow-artifacts:/"  # proxied by the tracking server
    assert settings.mlflow_ui_url == "http://mlflow.internal:5000"
    assert settings.capture_url == "postgresql+psycopg2://housing@db.internal:5432/housing"  # no password in it
    # The state folder stays the host's (tokens, spill, fallback baseline).
    assert settings.home == tmp_path / "state"
    assert settings.tokens_path == tmp_path / "state" / "server" / "tokens.json"
    # apply_production_environment ran: libpq and MLflow's S3 client find what the URLs leave out.
    assert os.environ["PGPASSWORD"] == "s3cret"
    assert os.environ["MLFLOW_S3_ENDPOINT_URL"] == "http://minio.internal:9000"


def test_production_profile_without_tracking_server_uses_the_mlflow_database(clean_environment):
    monkeypatch = clean_environment
    monkeypatch.setenv("HOUSING_PROFILE", "production")
    monkeypatch.setenv("HOUSING_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/housing")
    monkeypatch.setenv("HOUSING_S3_BUCKET", "bucket")

    settings = process_settings()

    assert settings.mlflow_tracking_uri == "postgresql+psycopg2://postgres@127.0.0.1:5432/housing_mlflow"
    assert settings.mlflow_artifact_root == "s3://bucket/housing/mlflow"
    assert settings.capture_url == "postgresql+psycopg2://postgres@127.0.0.1:5432/housing"


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"HOUSING_PROFILE": "staging"}, r"HOUSING_PROFILE must be one of embedded, production; got 'staging'"),
        ({"HOUSING_PROFILE": "production", "HOUSING_S3_BUCKET": "bucket"}, r"HOUSING_POSTGRES_URL is required"),
        ({"HOUSING_PROFILE": "production", "HOUSING_POSTGRES_URL": "postgresql://postgres@127.0.0.1/housing"},
         r"HOUSING_S3_BUCKET must name a bucket"),
        ({"HOUSING_PROFILE": "production", "HOUSING_POSTGRES_URL": "postgresql://postgres@127.0.0.1/housing",
          "HOUSING_S3_BUCKET": "bucket", "HOUSING_MLFLOW_TRACKING_URI": "sqlite:///x.db"},
         r"HOUSING_MLFLOW_TRACKING_URI must be the http:// or https:// address"),
    ],
)
def test_misconfigured_profile_is_an_error_naming_the_variable(clean_environment, variables, message):
    for name, value in variables.items():
        clean_environment.setenv(name, value)
    with pytest.raises(ProfileConfigurationError, match=message):
        process_settings()


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "--port", "1"],
        ["score", "in.csv", "out.parquet"],
        ["simulate", "--url", "http://127.0.0.1:1", "--rows", "1"],
        ["rollout", "show"],
        ["labels", "list"],
    ],
    ids=lambda argv: argv[0],
)
def test_commands_refuse_a_misconfigured_production_profile_with_exit_2_naming_the_variable(
    clean_environment, tmp_path, capsys, argv
):
    from housing_platform.cli.main import EXIT_INVALID_ARGUMENTS, main

    clean_environment.setenv("HOUSING_PROFILE", "production")
    clean_environment.setenv("HOUSING_S3_BUCKET", "bucket")
    clean_environment.chdir(tmp_path)  # score's in.csv does not exist: the profile is checked first

    assert main(argv) == EXIT_INVALID_ARGUMENTS

    error = capsys.readouterr().err
    assert "HOUSING_POSTGRES_URL is required when HOUSING_PROFILE=production" in error
    # No silent fallback: nothing was created in the state folder (no SQLite registry or capture store).
    assert not (tmp_path / "state").exists()
