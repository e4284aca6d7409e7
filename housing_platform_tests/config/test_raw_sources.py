"""`raw_housing_data` reads where teams keep their data: a local file, an S3 object, a PostgreSQL table.

The same districts are written as a CSV and a Parquet file, uploaded to moto's S3 server as both,
and loaded into a table of the local PostgreSQL; materializing the raw asset from each of them gives
one data version (the content's SHA-256). A missing file, key, bucket or table, a damaged file or a
failing query fails naming it. The settings tests need no service.
"""

import uuid

import dagster as dg
import pandas as pd
import pytest
from sqlalchemy import create_engine, text

from housing_platform.adapters.raw_sources import content_sha256, read_raw_source
from housing_platform.config.raw_source import RawSource
from housing_platform.config.settings import HousingSettings
from housing_platform.core.validation import UnreadableDataError
from housing_platform.defs.ingestion.assets import raw_housing_data
from housing_platform.defs.io_manager import ParquetJsonIOManager
from housing_platform.defs.resources import HousingStateResource
from housing_platform_tests.factories import make_districts

BUCKET = "housing-raw-sources-test"


def test_content_hash_ignores_the_storage_format_but_not_the_values(tmp_path):
    frame = make_districts(40)
    frame.to_parquet(tmp_path / "d.parquet", index=False)
    frame.to_csv(tmp_path / "d.csv", index=False)
    as_text = pd.read_csv(tmp_path / "d.csv")
    as_floats = frame.astype({column: "float64" for column in frame.select_dtypes("number").columns})
    reference = content_sha256(frame)
    assert content_sha256(pd.read_parquet(tmp_path / "d.parquet")) == reference
    assert content_sha256(as_text) == reference
    assert content_sha256(as_floats) == reference  # an integer column stored as float is the same data

    changed = frame.copy()
    changed.loc[3, "median_income"] += 0.001
    assert content_sha256(changed) != reference
    assert content_sha256(frame.iloc[::-1]) != reference  # row order counts: the splits depend on it
    assert content_sha256(frame.rename(columns={"households": "homes"})) != reference


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"uri": "data/districts.xlsx"}, r"HOUSING_RAW__URI must end in \.csv or \.parquet.*'data/districts.xlsx'"),
        ({"uri": "s3://bucket-only"}, r"HOUSING_RAW__URI must be s3://<bucket>/<key>; got 's3://bucket-only'"),
        ({"uri": "ftp://host/d.csv"}, r"must be a local path, an s3:// URI or a postgresql:// URL"),
        ({"uri": "d.csv", "table": "districts"}, r"HOUSING_RAW__TABLE / HOUSING_RAW__QUERY need a PostgreSQL URL"),
        ({"uri": "postgresql://u@db/raw"}, r"exactly one of HOUSING_RAW__TABLE and HOUSING_RAW__QUERY"),
        ({"uri": "postgresql://u@db/raw", "table": "t", "query": "select 1"}, r"exactly one of"),
        ({"uri": "postgresql://u@db/raw", "table": "t; drop table x"}, r"HOUSING_RAW__TABLE must be a table name"),
        ({"uri": "postgresql://u:s3cret@db/raw", "table": "t"}, r"must not contain a password.*PGPASSWORD"),
    ],
)
def test_raw_source_settings_name_the_variable_and_rule_they_break(fields, message):
    with pytest.raises(ValueError, match=message) as caught:
        RawSource(**fields)
    assert "s3cret" not in str(caught.value)


def test_raw_source_is_read_from_its_environment_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("HOUSING_RAW__URI", "postgresql://reader@warehouse:5432/raw")
    monkeypatch.setenv("HOUSING_RAW__TABLE", "census.districts")
    settings = HousingSettings(home=tmp_path)
    assert settings.raw == RawSource(uri="postgresql://reader@warehouse:5432/raw", table="census.districts")
    assert HousingStateResource.from_settings(settings).raw_source.kind == "database"
    monkeypatch.setenv("HOUSING_RAW__TABLE", "bad name")
    with pytest.raises(ValueError, match=r"HOUSING_RAW__TABLE must be a table name.*'bad name'"):
        HousingSettings(home=tmp_path)


@pytest.fixture
def stores(postgres_url, moto_endpoint, monkeypatch, tmp_path):
    """The same districts as local CSV/Parquet files, S3 objects on moto and a PostgreSQL table."""
    import boto3

    # moto accepts any credentials; these keep boto3 away from ~/.aws and the metadata service.
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    frame = make_districts(300, missing_bedrooms_share=0.1)  # nulls too: NULL in PostgreSQL, empty in CSV
    frame.to_csv(tmp_path / "districts.csv", index=False)
    frame.to_parquet(tmp_path / "districts.parquet", index=False)
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    for name in ("districts.csv", "districts.parquet"):
        s3.upload_file(str(tmp_path / name), BUCKET, f"raw/{name}")
    table = f"raw_districts_{uuid.uuid4().hex[:8]}"
    engine = create_engine(postgres_url)
    frame.to_sql(table, engine, index=False)
    try:
        yield {"frame": frame, "table": table, "tmp": tmp_path, "endpoint": moto_endpoint, "s3": s3}
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP TABLE IF EXISTS "{table}"'))
        engine.dispose()


def materialize_raw(tmp_path, source: RawSource, endpoint: str) -> dg.MaterializeResult:
    state = HousingStateResource(
        home=str(tmp_path / "state"), data_path=str(tmp_path / "unused.csv"),
        raw_uri=source.uri, raw_table=source.table, raw_query=source.query,
        s3_endpoint_url=endpoint, s3_region="us-east-1",
    )
    io_manager = ParquetJsonIOManager(base_dir=str(tmp_path / "state" / "storage"))
    return dg.materialize(
        [raw_housing_data], resources={"housing_state": state, "io_manager": io_manager}, raise_on_error=False
    )


@pytest.mark.postgres
def test_same_districts_from_file_s3_or_postgres_have_one_data_version(stores, postgres_url):
    tmp, endpoint = stores["tmp"], stores["endpoint"]
    sources = [
        RawSource(uri=str(tmp / "districts.csv")),
        RawSource(uri=str(tmp / "districts.parquet")),
        RawSource(uri=f"s3://{BUCKET}/raw/districts.csv"),
        RawSource(uri=f"s3://{BUCKET}/raw/districts.parquet"),
        RawSource(uri=postgres_url, table=stores["table"]),
        RawSource(uri=postgres_url, query=f'SELECT * FROM "{stores["table"]}" WHERE median_income > 0'),
    ]
    expected = content_sha256(stores["frame"])
    for source in sources:
        result = materialize_raw(tmp, source, endpoint)
        assert result.success, source
        [materialization] = result.asset_materializations_for_node("raw_housing_data")
        assert materialization.tags["dagster/data_version"] == expected, source.uri
        assert materialization.metadata["row_count_raw"].value == 300
    pd.testing.assert_frame_equal(result.output_for_node("raw_housing_data"), stores["frame"], check_dtype=False)


@pytest.mark.postgres
def test_unreadable_sources_fail_naming_the_file_key_bucket_or_table(stores, postgres_url):
    tmp, endpoint, table = stores["tmp"], stores["endpoint"], stores["table"]
    (tmp / "damaged.parquet").write_bytes(b"PAR1 not really")
    cases = [
        (RawSource(uri=str(tmp / "missing.parquet")), rf"{tmp / 'missing.parquet'}: no such file"),
        (RawSource(uri=str(tmp / "damaged.parquet")), r"damaged.parquet: not a readable Parquet file"),
        (RawSource(uri=f"s3://{BUCKET}/raw/missing.csv"), rf"s3://{BUCKET}/raw/missing.csv: no object with key 'raw/missing.csv'"),
        (RawSource(uri="s3://no-such-bucket-here/d.csv"), r"s3://no-such-bucket-here/d.csv: no bucket named 'no-such-bucket-here'"),
        (RawSource(uri=postgres_url, table="no_such_table"), r"test: no table named 'no_such_table'"),
        (RawSource(uri=postgres_url, query=f'SELECT nope FROM "{table}"'), r'HOUSING_RAW__QUERY\): column "nope" does not exist'),
        (RawSource(uri=postgres_url, query=f'DELETE FROM "{table}"'), r"read-only transaction"),
        (RawSource(uri=postgres_url, query=f'SELECT * FROM "{table}" WHERE false'), r"\(the query in HOUSING_RAW__QUERY\): no rows"),
    ]
    import boto3

    def client():
        return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")

    for source, message in cases:
        with pytest.raises(UnreadableDataError, match=message):
            read_raw_source(source, tmp / "unused.csv", client)
    with create_engine(postgres_url).connect() as conn:  # the refused DELETE left the rows in place
        assert conn.execute(text(f'SELECT count(*) FROM "{table}"')).scalar() == 300

    # Through the asset: the run fails with the reason, nothing is stored.
    result = materialize_raw(tmp, RawSource(uri=f"s3://{BUCKET}/raw/missing.parquet"), endpoint)
    assert not result.success
    [failure] = [event for event in result.all_events if event.is_step_failure]
    assert "Cannot read the district data: s3://" in failure.step_failure_data.user_failure_data.description
