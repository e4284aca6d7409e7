"""One IO manager, two backends: a local folder and an S3 bucket (moto in memory), never a pickle.

The same tests run against both, so the two cannot drift. The S3 backend against a real S3 API
(moto's server) and PostgreSQL is exercised in ``config/test_production_profile.py``.
"""

import io
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from dagster_aws.s3 import S3Resource

from housing_platform.defs.io_manager import ParquetJsonIOManager
from housing_platform_tests.factories import make_districts
from housing_platform_tests.support import REGIONS, round_trip_assets

BUCKET = "housing-values"
PREFIX = "team/housing/storage"


class Storage:
    """The stored bytes of a backend, read without the IO manager."""

    def __init__(self, io_manager: ParquetJsonIOManager, root: Path | None, client=None):
        self.io_manager, self.root, self.client = io_manager, root, client

    def keys(self) -> set[str]:
        if self.client is None:
            return {p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file()}
        listed = self.client.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX + "/").get("Contents", [])
        return {item["Key"].removeprefix(PREFIX + "/") for item in listed}

    def read(self, key: str) -> bytes:
        if self.client is None:
            return (self.root / key).read_bytes()
        return self.client.get_object(Bucket=BUCKET, Key=f"{PREFIX}/{key}")["Body"].read()

    def location(self, key: str) -> str:
        return str(self.root / key) if self.client is None else f"s3://{BUCKET}/{PREFIX}/{key}"


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    if request.param == "local":
        root = tmp_path / "storage"
        yield Storage(ParquetJsonIOManager(base_dir=str(root)), root)
        return
    from moto import mock_aws

    # moto accepts any credentials; these keep boto3 away from ~/.aws and the metadata service.
    for name, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_SESSION_TOKEN": "test",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        s3 = S3Resource(region_name="us-east-1")
        client = s3.get_client()
        client.create_bucket(Bucket=BUCKET)
        yield Storage(ParquetJsonIOManager(base_dir=f"s3://{BUCKET}/{PREFIX}", s3=s3), None, client)


def test_frames_dicts_and_partitions_round_trip_as_parquet_and_json(storage: Storage) -> None:
    frame = make_districts(40)
    regions = REGIONS
    district_frame, district_summary, regional_frame, regional_rows = round_trip_assets(frame)

    resources = {"io_manager": storage.io_manager}
    with dg.instance_for_test() as instance:
        result = dg.materialize([district_frame, district_summary], instance=instance, resources=resources)
        assert result.success
        metadata = result.asset_materializations_for_node("district_frame")[0].metadata
        assert metadata["storage_path"].value == storage.location("district_frame.parquet")
        assert metadata["stored_bytes_raw"].value == len(storage.read("district_frame.parquet"))
        for region in regions.get_partition_keys():
            assert dg.materialize(
                [district_frame, regional_frame, regional_rows],
                selection=[regional_frame, regional_rows],
                partition_key=region,
                instance=instance,
                resources=resources,
            ).success  # regional_rows loaded regional_frame's partition back

        assert storage.keys() == {
            "district_frame.parquet",
            "district_summary.json",
            "regional_frame/north.parquet",
            "regional_frame/south.parquet",
            "regional_rows/north.json",
            "regional_rows/south.json",
        }
        assets = [district_frame, district_summary, regional_frame, regional_rows]
        defs = dg.Definitions(assets=assets, resources=resources)
        pd.testing.assert_frame_equal(defs.load_asset_value("district_frame", instance=instance), frame)
        assert defs.load_asset_value("district_summary", instance=instance) == {
            "rows": 40, "mean_value": 1.5, "source": "/data/d.csv",
        }
        assert defs.load_asset_value("regional_rows", partition_key="south", instance=instance) == {
            "rows": 3, "region": "south",
        }
        # What is stored is plain Parquet / JSON that any tool can read, not a pickle.
        assert storage.read("district_frame.parquet")[:4] == b"PAR1"
        pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(storage.read("district_frame.parquet"))), frame)


def test_several_partitions_load_as_a_dict_by_partition(storage: Storage) -> None:
    days = dg.StaticPartitionsDefinition(["2026-11-20", "2026-11-21"])

    @dg.asset(partitions_def=days)
    def daily_count(context: dg.AssetExecutionContext) -> dict:
        return {"day": context.partition_key}

    @dg.asset(ins={"daily_count": dg.AssetIn(partition_mapping=dg.AllPartitionMapping())})
    def all_days(daily_count: dict) -> dict:
        return {"days": sorted(value["day"] for value in daily_count.values())}

    resources = {"io_manager": storage.io_manager}
    with dg.instance_for_test() as instance:
        for day in days.get_partition_keys():
            assert dg.materialize([daily_count], partition_key=day, instance=instance, resources=resources).success
        both = [daily_count, all_days]
        assert dg.materialize(both, selection=[all_days], instance=instance, resources=resources).success
        assert dg.Definitions(assets=[daily_count, all_days], resources=resources).load_asset_value(
            "all_days", instance=instance
        ) == {"days": ["2026-11-20", "2026-11-21"]}


def test_a_value_that_changed_format_does_not_leave_the_old_one_to_be_read(storage: Storage) -> None:
    io_manager = storage.io_manager
    io_manager.handle_output(dg.build_output_context(asset_key="changing_value"), make_districts(5))
    io_manager.handle_output(dg.build_output_context(asset_key="changing_value"), {"now": "json"})
    assert io_manager.load_input(dg.build_input_context(asset_key="changing_value")) == {"now": "json"}
    assert storage.keys() == {"changing_value.json"}
    io_manager.handle_output(dg.build_output_context(asset_key="changing_value"), make_districts(5))
    assert storage.keys() == {"changing_value.parquet"}


def test_a_value_that_is_not_json_is_refused_and_a_missing_one_named(storage: Storage) -> None:
    io_manager = storage.io_manager
    with pytest.raises(TypeError, match=r"odd_value: value of type object cannot be stored as JSON; return a"):
        io_manager.handle_output(dg.build_output_context(asset_key="odd_value"), object())
    with pytest.raises(FileNotFoundError) as error:
        io_manager.load_input(dg.build_input_context(asset_key="never_made"))
    assert str(error.value) == (
        f"No stored value for never_made at {storage.location('never_made.parquet')} or "
        f"{storage.location('never_made.json')}: materialize it first"
    )
    assert storage.keys() == set()


def test_none_is_not_stored(storage: Storage) -> None:
    storage.io_manager.handle_output(dg.build_output_context(asset_key="nothing"), None)
    assert storage.keys() == set()


def test_an_s3_base_dir_needs_an_s3_resource() -> None:
    with pytest.raises(ValueError, match="is on S3: pass s3=S3Resource"):
        ParquetJsonIOManager(base_dir="s3://bucket/prefix")
