"""The production profile against real services: PostgreSQL on 127.0.0.1:5432 and moto's S3 server.

moto's server (``conftest.py``) runs on a free loopback port; every S3 call below is a real HTTP
request to it. The PostgreSQL databases (one for Dagster and the capture store, one for MLflow) get
unique names and are dropped afterwards. The service tests are skipped, with the reason, only when
PostgreSQL does not answer or moto is not installed or does not start; the settings tests need no
service.
"""

import io
import os

import dagster as dg
import pandas as pd
import pytest
import yaml
from sqlalchemy import create_engine, text

from housing_platform.config.profiles import (
    EMBEDDED,
    PRODUCTION,
    ProductionSettings,
    ProfileConfigurationError,
    active_profile,
    dagster_yaml_for_production,
    write_production_dagster_yaml,
)
from housing_platform.config.settings import HousingSettings
from housing_platform.defs.resources import production_resources
from housing_platform_tests.config.services import bucket_keys as shared_bucket_keys
from housing_platform_tests.config.services import production_profile, s3_client
from housing_platform_tests.factories import make_districts
from housing_platform_tests.support import REGIONS, round_trip_assets

S3_BUCKET = "housing-platform-test"
S3_PREFIX = "team/housing"


def production_environ(**overrides: str) -> dict[str, str]:
    environ = {
        "HOUSING_PROFILE": "production",
        "HOUSING_POSTGRES_URL": "postgresql://postgres@127.0.0.1:5432/housing",
        "HOUSING_S3_BUCKET": "bucket",
    }
    environ.update(overrides)
    return environ


# ---------------------------------------------------------------------------------------------------
# Settings: no service needed
# ---------------------------------------------------------------------------------------------------
def test_profile_defaults_to_embedded_and_rejects_unknown_names():
    assert active_profile({}) == EMBEDDED
    assert active_profile({"HOUSING_PROFILE": " Production "}) == PRODUCTION
    with pytest.raises(ProfileConfigurationError, match=r"HOUSING_PROFILE must be one of embedded, production; got 'prod'"):
        active_profile({"HOUSING_PROFILE": "prod"})


def test_production_settings_derive_mlflow_database_and_s3_locations(tmp_path):
    housing = HousingSettings(home=tmp_path, data_path=tmp_path / "d.csv")
    settings = ProductionSettings.from_env(
        housing, production_environ(HOUSING_S3_PREFIX="/ml/housing/", HOUSING_S3_ENDPOINT_URL="http://127.0.0.1:9000")
    )
    # A bare postgresql:// means psycopg 3 to SQLAlchemy 2.1; the profile pins the installed psycopg2.
    assert settings.postgres_url == "postgresql+psycopg2://postgres@127.0.0.1:5432/housing"
    assert settings.mlflow_tracking_uri == "postgresql+psycopg2://postgres@127.0.0.1:5432/housing_mlflow"
    assert settings.capture_url == settings.postgres_url
    assert settings.mlflow_artifact_root == "s3://bucket/ml/housing/mlflow"
    assert settings.storage_uri == "s3://bucket/ml/housing/storage"
    assert settings.s3_endpoint_url == "http://127.0.0.1:9000"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"HOUSING_POSTGRES_URL": ""}, r"HOUSING_POSTGRES_URL is required when HOUSING_PROFILE=production"),
        ({"HOUSING_POSTGRES_URL": "mysql://root@db/housing"}, r"must be a postgresql:// URL; got 'mysql://root@db/housing'"),
        ({"HOUSING_POSTGRES_URL": "postgresql://u:s3cret@db/housing"}, r"must not contain a password.*HOUSING_POSTGRES_PASSWORD"),
        ({"HOUSING_POSTGRES_URL": "postgresql://postgres@127.0.0.1:5432"}, r"must name a user, a host and a database"),
        ({"HOUSING_S3_BUCKET": ""}, r"HOUSING_S3_BUCKET must name a bucket"),
    ],
)
def test_production_settings_name_the_variable_and_rule_they_break(tmp_path, overrides, message):
    housing = HousingSettings(home=tmp_path, data_path=tmp_path / "d.csv")
    with pytest.raises(ProfileConfigurationError, match=message) as caught:
        ProductionSettings.from_env(housing, production_environ(**overrides))
    assert "s3cret" not in str(caught.value)


def test_production_dagster_yaml_uses_postgres_and_never_stores_the_password(tmp_path):
    housing = HousingSettings(home=tmp_path, data_path=tmp_path / "d.csv")
    settings = ProductionSettings.from_env(
        housing,
        production_environ(
            HOUSING_POSTGRES_URL="postgresql://dagster@db.internal:6543/housing?sslmode=require",
            HOUSING_POSTGRES_PASSWORD="s3cret",
        ),
    )
    text_ = dagster_yaml_for_production(settings, tmp_path / "dagster")
    assert "s3cret" not in text_
    config = yaml.safe_load(text_)
    assert config["storage"]["postgres"]["postgres_db"] == {
        "hostname": "db.internal",
        "port": 6543,
        "username": "dagster",
        "db_name": "housing",
        "password": {"env": "HOUSING_POSTGRES_PASSWORD"},
        "params": {"sslmode": "require"},
        "scheme": "postgresql+psycopg2",
    }
    assert config["compute_logs"]["class"] == "S3ComputeLogManager"
    assert config["compute_logs"]["config"]["bucket"] == "bucket"
    assert config["compute_logs"]["config"]["prefix"] == "housing/compute-logs"
    assert config["telemetry"] == {"enabled": False}
    assert "s3cret" not in settings.model_dump_json()  # SecretStr: not in logs or reprs either


# ---------------------------------------------------------------------------------------------------
# Services: PostgreSQL and moto's S3 server
# ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def production(postgres_server, moto_endpoint, tmp_path_factory):
    """HOUSING_PROFILE=production against a fresh database pair and bucket; the environment is restored after."""
    home = tmp_path_factory.mktemp("production_state")
    with production_profile(postgres_server, moto_endpoint, home, bucket=S3_BUCKET, prefix=S3_PREFIX) as settings:
        yield settings


def bucket_keys(prefix: str) -> set[str]:
    return shared_bucket_keys(S3_BUCKET, prefix)


@pytest.mark.postgres
def test_s3_io_manager_round_trips_frames_dicts_and_partitions_through_s3(production):
    io_manager = production_resources(production)["io_manager"]
    frame = make_districts(50)
    regions = REGIONS
    district_frame, district_summary, regional_frame, regional_rows = round_trip_assets(frame)

    defs = dg.Definitions(
        assets=[district_frame, district_summary, regional_frame, regional_rows], resources={"io_manager": io_manager}
    )
    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize([district_frame, district_summary], instance=instance, resources={"io_manager": io_manager}).success
    for region in regions.get_partition_keys():
        result = dg.materialize(
            [district_frame, regional_frame, regional_rows],
            selection=[regional_frame, regional_rows],
            partition_key=region,
            instance=instance,
            resources={"io_manager": io_manager},
        )
        assert result.success  # regional_frame loaded district_frame, regional_rows its partition, from S3

    storage = f"{S3_PREFIX}/storage/"
    assert bucket_keys(storage) == {
        f"{storage}district_frame.parquet",
        f"{storage}district_summary.json",
        f"{storage}regional_frame/north.parquet",
        f"{storage}regional_frame/south.parquet",
        f"{storage}regional_rows/north.json",
        f"{storage}regional_rows/south.json",
    }
    pd.testing.assert_frame_equal(defs.load_asset_value("district_frame", instance=instance), frame)
    assert defs.load_asset_value("district_summary", instance=instance) == {
        "rows": 50, "mean_value": 1.5, "source": "/data/d.csv",
    }
    assert defs.load_asset_value("regional_rows", partition_key="south", instance=instance) == {
        "rows": 3, "region": "south",
    }
    south = defs.load_asset_value("regional_frame", partition_key="south", instance=instance)
    assert list(south["region"]) == ["south"] * 3

    # What is in the bucket is plain Parquet / JSON that any tool can read, not a pickle.
    body = s3_client().get_object(Bucket=S3_BUCKET, Key=f"{storage}district_frame.parquet")["Body"].read()
    assert body[:4] == b"PAR1"
    pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(body)), frame)


@pytest.mark.postgres
def test_s3_io_manager_refuses_a_value_it_cannot_store_as_json(production):
    io_manager = production_resources(production)["io_manager"]
    with pytest.raises(TypeError, match=r"odd_value: value of type object cannot be stored as JSON; return a DataFrame"):
        io_manager.handle_output(dg.build_output_context(asset_key="odd_value"), object())
    assert not bucket_keys(f"{S3_PREFIX}/storage/odd_value")

    with pytest.raises(FileNotFoundError, match=rf"s3://{S3_BUCKET}/{S3_PREFIX}/storage/never_made.parquet.*materialize it first"):
        io_manager.load_input(dg.build_input_context(asset_key="never_made"))


@pytest.mark.postgres
def test_s3_io_manager_does_not_serve_a_stale_parquet_after_the_value_became_json(production):
    io_manager = production_resources(production)["io_manager"]
    io_manager.handle_output(dg.build_output_context(asset_key="changing_value"), make_districts(5))
    io_manager.handle_output(dg.build_output_context(asset_key="changing_value"), {"now": "json"})
    assert io_manager.load_input(dg.build_input_context(asset_key="changing_value")) == {"now": "json"}
    assert bucket_keys(f"{S3_PREFIX}/storage/changing_value") == {f"{S3_PREFIX}/storage/changing_value.json"}


@pytest.mark.postgres
def test_postgres_instance_records_ingestion_runs_and_gate_checks(production):
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

    from housing_platform.defs.ingestion.assets import raw_housing_data, validated_housing_data
    from housing_platform.defs.ingestion.checks import VALIDATION_CHECKS

    dagster_home = write_production_dagster_yaml(production)
    assert dagster_home == production.housing.dagster_home
    resources = production_resources(production)
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert type(instance.compute_log_manager).__name__ == "S3ComputeLogManager"
        result = dg.materialize([raw_housing_data, validated_housing_data], instance=instance, resources=resources)
        assert result.success
        run_id = result.run_id

    # A second instance from the same dagster.yaml: what it sees was read back from PostgreSQL.
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS
        for asset in ("raw_housing_data", "validated_housing_data"):
            event = instance.get_latest_materialization_event(dg.AssetKey(asset))
            assert event is not None and event.run_id == run_id
        check_keys = [dg.AssetCheckKey(dg.AssetKey("validated_housing_data"), name) for name in VALIDATION_CHECKS]
        latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(check_keys)
        assert set(latest) == set(check_keys)
        for record in latest.values():
            assert record.run_id == run_id
            assert record.event.asset_check_evaluation.passed

        defs = dg.Definitions(assets=[raw_housing_data, validated_housing_data], resources=resources)
        validated = defs.load_asset_value("validated_housing_data", instance=instance)
        assert len(validated) == 1_200

    engine = create_engine(production.postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("select count(*) from runs where run_id = :id"), {"id": run_id}).scalar() == 1
    finally:
        engine.dispose()
    storage = f"{S3_PREFIX}/storage/"
    assert {f"{storage}raw_housing_data.parquet", f"{storage}validated_housing_data.parquet"} <= bucket_keys(storage)
    # The steps' logs went to the bucket too (S3ComputeLogManager), not only to this host's disk.
    logs = bucket_keys(f"{S3_PREFIX}/compute-logs/")
    assert any(run_id in key for key in logs), sorted(logs)[:10]


@pytest.mark.postgres
def test_mlflow_tracks_runs_in_postgres_and_stores_artifacts_in_s3(production, tmp_path):
    from housing_platform.adapters.mlflow_registry import ModelRegistry

    assert production.mlflow_tracking_uri.startswith("postgresql+psycopg2://")
    assert production.mlflow_artifact_root == f"s3://{S3_BUCKET}/{S3_PREFIX}/mlflow"
    assert os.environ["MLFLOW_S3_ENDPOINT_URL"] == production.s3_endpoint_url  # set by apply_production_environment

    registry = ModelRegistry(production.mlflow_tracking_uri, production.mlflow_artifact_root)
    run_id = registry.start_run("production-profile-smoke", tags={"profile": "production"})
    registry.log_params(run_id, {"epochs": 3})
    report = tmp_path / "evaluation.json"
    report.write_text('{"rmse_dollars": 48000}')
    registry.log_artifact(run_id, report, artifact_path="reports")
    registry.end_run(run_id)

    keys = bucket_keys(f"{S3_PREFIX}/mlflow/")
    [key] = [key for key in keys if key.endswith(f"/{run_id}/artifacts/reports/evaluation.json")]
    assert s3_client().get_object(Bucket=S3_BUCKET, Key=key)["Body"].read() == report.read_bytes()

    # Read back through a second client: the run is in PostgreSQL, its artifact listing comes from S3.
    again = ModelRegistry(production.mlflow_tracking_uri, production.mlflow_artifact_root)
    run = again.client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params == {"epochs": "3"}
    assert [item.path for item in again.client.list_artifacts(run_id, "reports")] == ["reports/evaluation.json"]
    engine = create_engine(production.mlflow_tracking_uri)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("select count(*) from runs where run_uuid = :id"), {"id": run_id}).scalar() == 1
    finally:
        engine.dispose()
