"""The production profile reaches MLflow over HTTP: a real `mlflow server` on loopback.

The server is started with the command line the profile renders (PostgreSQL backend store
``<db>_mlflow``, artifacts proxied to the moto bucket) and the platform is given only its address
(``HOUSING_MLFLOW_TRACKING_URI``). A model version registered through the platform's registry code
is read back over HTTP by a second client, aliases included, and found where the server put it:
rows in PostgreSQL, files in the bucket. The settings tests need no service.
"""

import json

import httpx
import numpy as np
import pandas as pd
import pytest
from sqlalchemy import create_engine, text

from housing_platform.config.mlflow_server import PROXIED_ARTIFACT_ROOT, mlflow_server_command
from housing_platform.config.profiles import ProductionSettings, ProfileConfigurationError
from housing_platform.config.settings import HousingSettings
from housing_platform.devtools.processes import free_port
from housing_platform_tests.config.services import MlflowTrackingServer, bucket_keys, production_profile

S3_BUCKET = "housing-mlflow-server-test"
S3_PREFIX = "ml/housing"


def production_environ(**overrides: str) -> dict[str, str]:
    environ = {
        "HOUSING_PROFILE": "production",
        "HOUSING_POSTGRES_URL": "postgresql://postgres@127.0.0.1:5432/housing",
        "HOUSING_S3_BUCKET": "bucket",
    }
    environ.update(overrides)
    return environ


def test_tracking_server_setting_routes_mlflow_over_http_with_proxied_artifacts(tmp_path):
    housing = HousingSettings(home=tmp_path, data_path=tmp_path / "d.csv")
    settings = ProductionSettings.from_env(
        housing, production_environ(HOUSING_MLFLOW_TRACKING_URI="http://mlflow.internal:5000/")
    )
    assert settings.mlflow_tracking_uri == "http://mlflow.internal:5000"
    assert settings.mlflow_artifact_root == PROXIED_ARTIFACT_ROOT  # files go through the server
    # The server's own stores: the <db>_mlflow database and the bucket, as without a server.
    assert settings.mlflow_backend_store_uri == "postgresql+psycopg2://postgres@127.0.0.1:5432/housing_mlflow"
    assert settings.mlflow_artifacts_destination == "s3://bucket/housing/mlflow"
    assert settings.mlflow_ui_url == "http://mlflow.internal:5000"  # the server is the UI the links open
    assert mlflow_server_command(
        settings.mlflow_backend_store_uri, settings.mlflow_artifacts_destination, host="0.0.0.0", port=5000
    ) == [
        "mlflow", "server", "--backend-store-uri", "postgresql+psycopg2://postgres@127.0.0.1:5432/housing_mlflow",
        "--serve-artifacts", "--artifacts-destination", "s3://bucket/housing/mlflow",
        "--host", "0.0.0.0", "--port", "5000", "--workers", "1",
    ]

    direct = ProductionSettings.from_env(
        housing,
        production_environ(HOUSING_MLFLOW_TRACKING_URI="https://mlflow.internal", HOUSING_MLFLOW_ARTIFACT_ROOT="s3://b/x"),
    )
    assert (direct.mlflow_tracking_uri, direct.mlflow_artifact_root) == ("https://mlflow.internal", "s3://b/x")

    without = ProductionSettings.from_env(housing, production_environ())
    assert without.mlflow_tracking_uri == without.mlflow_backend_store_uri  # no server: the database itself
    assert without.mlflow_artifact_root == "s3://bucket/housing/mlflow"
    assert without.mlflow_ui_url == housing.mlflow_ui_url

    chosen_ui = HousingSettings(home=tmp_path, data_path=tmp_path / "d.csv", mlflow_ui_url="https://mlflow.example.com")
    assert ProductionSettings.from_env(
        chosen_ui, production_environ(HOUSING_MLFLOW_TRACKING_URI="http://mlflow.internal:5000")
    ).mlflow_ui_url == "https://mlflow.example.com"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("sqlite:///tmp/mlflow.db", r"HOUSING_MLFLOW_TRACKING_URI must be the http:// or https:// address of an `mlflow server`"),
        ("http://", r"HOUSING_MLFLOW_TRACKING_URI must be the http:// or https:// address"),
        ("http://mlflow:99999", r"HOUSING_MLFLOW_TRACKING_URI is not a URL .*'http://mlflow:99999'"),
        ("http://admin:s3cret@mlflow:5000", r"must not carry credentials.*MLFLOW_TRACKING_PASSWORD.*'http://\*\*\*@mlflow:5000'"),
        ("http://mlflow:5000/?token=s3cret", r"must not have a query or fragment"),
    ],
)
def test_tracking_server_setting_names_the_variable_and_rule_it_breaks(tmp_path, value, message):
    housing = HousingSettings(home=tmp_path, data_path=tmp_path / "d.csv")
    with pytest.raises(ProfileConfigurationError, match=message) as caught:
        ProductionSettings.from_env(housing, production_environ(HOUSING_MLFLOW_TRACKING_URI=value))
    if "token" not in value:
        assert "s3cret" not in str(caught.value)


@pytest.fixture(scope="module")
def tracking_server(postgres_server, moto_endpoint, tmp_path_factory):
    home = tmp_path_factory.mktemp("mlflow_server_state")
    port = free_port()
    with production_profile(
        postgres_server, moto_endpoint, home, bucket=S3_BUCKET, prefix=S3_PREFIX,
        HOUSING_MLFLOW_TRACKING_URI=f"http://127.0.0.1:{port}",
    ) as settings:
        with MlflowTrackingServer(home, settings, port):
            yield settings


@pytest.mark.postgres
@pytest.mark.slow
def test_model_version_registered_through_the_platform_is_read_back_over_http(tracking_server, models, tmp_path):
    from housing_platform.adapters.mlflow_registry import (
        CHAMPION_ALIAS,
        ModelRegistry,
        model_artifacts,
    )
    from housing_platform.core.model import TrainingConfig
    from housing_platform.core.schema import FEATURE_COLUMNS
    from housing_platform.devtools.tiny_models import EPOCHS

    settings = tracking_server
    assert settings.mlflow_tracking_uri.startswith("http://127.0.0.1:")
    files = models.root / "files"  # the session's tiny model: its transformer and network files
    registry = ModelRegistry(settings.mlflow_tracking_uri, settings.mlflow_artifact_root)
    run_id = registry.start_run("tracking-server-smoke", tags={"profile": "production"})
    config = TrainingConfig(epochs=EPOCHS, patience=EPOCHS, reduce_lr_patience=0).model_dump(mode="json")
    example = models.train[list(FEATURE_COLUMNS)].head(5)
    reference = models.train[list(FEATURE_COLUMNS)].head(20).reset_index(drop=True)
    registered = registry.log_and_register(
        run_id=run_id,
        artifacts=model_artifacts(tmp_path, files / "transformer.skops", files / "network_v1.keras", config, models.train),
        input_example=example,
        predictions_example=np.full(len(example), 200_000.0),
        tags={"purpose": "tracking server test"},
        reference=reference,
    )
    registry.end_run(run_id)
    registry.promote(registered.version)

    # A second client with only the address: what it sees came over HTTP from the server.
    again = ModelRegistry(ProductionSettings.from_env().mlflow_tracking_uri, settings.mlflow_artifact_root)
    champion = again.champion()
    assert champion is not None and champion.version == registered.version
    assert champion.tags["purpose"] == "tracking server test"
    assert again.aliases_of(registered.version) == [CHAMPION_ALIAS]
    # The files come through the server's artifact proxy and match the sha256 manifest taken at registration.
    baseline = again.fallback_baseline(registered.version)
    assert baseline is not None and baseline == json.loads((tmp_path / "fallback_baseline.json").read_text())
    pd.testing.assert_frame_equal(again.load_reference(registered.version), reference)

    answer = httpx.get(
        f"{settings.mlflow_tracking_uri}/api/2.0/mlflow/registered-models/alias",
        params={"name": again.model_name, "alias": CHAMPION_ALIAS}, timeout=10,
    )
    assert answer.status_code == 200
    assert answer.json()["model_version"]["version"] == registered.version
    assert CHAMPION_ALIAS in answer.json()["model_version"]["aliases"]

    # Where the server put it: the registry in <db>_mlflow, the files in the bucket under <prefix>/mlflow.
    engine = create_engine(settings.mlflow_backend_store_uri)
    try:
        with engine.connect() as conn:
            aliases = conn.execute(text("select alias, version from registered_model_aliases")).all()
    finally:
        engine.dispose()
    assert [(alias, str(version)) for alias, version in aliases] == [(CHAMPION_ALIAS, registered.version)]
    keys = bucket_keys(S3_BUCKET, f"{S3_PREFIX}/mlflow/")
    assert any(key.endswith("/artifacts/fallback_baseline.json") for key in keys), sorted(keys)[:20]
    assert any(key.endswith(f"/{run_id}/artifacts/reference/reference.parquet") for key in keys), sorted(keys)[:20]
