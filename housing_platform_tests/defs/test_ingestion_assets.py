"""The ingestion assets materialize on the real file, and the gate stops downstream work."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from housing_platform.adapters.raw_sources import content_sha256
from housing_platform.config.settings import HousingSettings
from housing_platform.defs.ingestion import assets as ingestion
from housing_platform.defs.ingestion.assets import file_sha256
from housing_platform.defs.ingestion.checks import VALIDATION_CHECKS
from housing_platform.defs.io_manager import ParquetJsonIOManager
from housing_platform.defs.resources import HousingStateResource

DOWNSTREAM_RAN: list[int] = []


@dg.asset
def downstream_of_gate(validated_housing_data: pd.DataFrame) -> None:
    """Stands in for the training assets: it must not run when the gate fails."""
    DOWNSTREAM_RAN.append(len(validated_housing_data))


def materialize_ingestion(settings: HousingSettings, data_path: Path, instance: dg.DagsterInstance, **kwargs):
    return dg.materialize(
        [ingestion.raw_housing_data, ingestion.validated_housing_data, downstream_of_gate],
        instance=instance,
        resources={
            "housing_state": HousingStateResource(home=str(settings.home), data_path=str(data_path)),
            "io_manager": ParquetJsonIOManager(base_dir=str(settings.storage_dir)),
        },
        raise_on_error=False,
        **kwargs,
    )


def test_ingestion_materializes_the_real_file(housing_settings: HousingSettings, real_data_path: Path) -> None:
    DOWNSTREAM_RAN.clear()
    with dg.instance_for_test() as instance:
        result = materialize_ingestion(housing_settings, real_data_path, instance)
        assert result.success
        assert {e.check_name for e in result.get_asset_check_evaluations() if e.passed} == set(VALIDATION_CHECKS)
        assert DOWNSTREAM_RAN == [20_637]

        raw = result.asset_materializations_for_node("raw_housing_data")[0]
        assert raw.metadata["row_count_raw"].value == 20_640
        assert raw.metadata["sha256"].value == file_sha256(real_data_path)
        record = instance.get_latest_materialization_event(dg.AssetKey("raw_housing_data"))
        # The data version hashes the content, not the bytes (adapters/raw_sources.py).
        assert record.asset_materialization.tags["dagster/data_version"] == content_sha256(pd.read_csv(real_data_path))

        validated = result.asset_materializations_for_node("validated_housing_data")[0]
        assert validated.metadata["quarantined_rows_raw"].value == 3
        quarantine = Path(validated.metadata["quarantine_path"].value)
        assert quarantine.parent == housing_settings.quarantine_dir
        assert len(pd.read_csv(quarantine)) == 3
        # Values are stored as Parquet, not pickled.
        assert (housing_settings.storage_dir / "validated_housing_data.parquet").exists()
        assert "dagster/column_schema" in validated.metadata


def test_raw_data_version_follows_the_file_content(housing_settings, districts_csv: Path, districts) -> None:
    with dg.instance_for_test() as instance:
        first = materialize_ingestion(housing_settings, districts_csv, instance, run_config=_small_gate())
        assert first.success
        districts.loc[0, "median_income"] = 7.5
        districts.to_csv(districts_csv, index=False)
        second = materialize_ingestion(housing_settings, districts_csv, instance, selection="raw_housing_data")
        assert second.success
        versions = [
            e.asset_materialization.tags["dagster/data_version"]
            for e in instance.fetch_materializations(dg.AssetKey("raw_housing_data"), limit=10).records
        ]
        # Newest first: the new version is the new content's hash, so downstream assets read as stale.
        assert versions == [content_sha256(pd.read_csv(districts_csv)), versions[1]] and versions[0] != versions[1]


def _small_gate(**overrides) -> dict:
    config = {"min_rows": 100, **overrides}
    return {"ops": {"validated_housing_data": {"config": config}}}


def test_corrupted_file_fails_a_blocking_check_and_downstream_does_not_run(
    housing_settings, tmp_path: Path, districts: pd.DataFrame
) -> None:
    DOWNSTREAM_RAN.clear()
    districts.loc[:29, "median_income"] = -1.0  # 15% of rows break a rule
    path = tmp_path / "corrupted.csv"
    districts.to_csv(path, index=False)
    with dg.instance_for_test() as instance:
        result = materialize_ingestion(housing_settings, path, instance, run_config=_small_gate())
        assert not result.success
        failed = {e.check_name for e in result.get_asset_check_evaluations() if not e.passed}
        assert failed == {"quarantine_share_within_limit"}
        assert DOWNSTREAM_RAN == []
        assert result.asset_materializations_for_node("downstream_of_gate") == []
        # The quarantine keeps the 30 rows, nothing is lost.
        assert len(pd.read_csv(next(housing_settings.quarantine_dir.glob("*.csv")))) == 30


def test_structural_failure_fails_the_materialization_naming_the_column(housing_settings, tmp_path: Path, districts) -> None:
    DOWNSTREAM_RAN.clear()
    path = tmp_path / "no_income.csv"
    districts.drop(columns=["median_income"]).to_csv(path, index=False)
    with dg.instance_for_test() as instance:
        result = materialize_ingestion(housing_settings, path, instance, run_config=_small_gate())
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        assert failure.step_key == "validated_housing_data"
        assert "median_income" in failure.event_specific_data.error.message
        assert "required column" in failure.event_specific_data.error.message
        assert DOWNSTREAM_RAN == []


@pytest.mark.parametrize("content", [b"", b"\x00\x01\x02"])
def test_unreadable_file_fails_raw_housing_data(housing_settings, tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.csv"
    path.write_bytes(content)
    with dg.instance_for_test() as instance:
        result = materialize_ingestion(housing_settings, path, instance)
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        assert failure.step_key == "raw_housing_data"
        assert "Cannot read the district data" in failure.event_specific_data.error.message
