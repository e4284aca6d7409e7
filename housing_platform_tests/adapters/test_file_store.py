"""The file store: the state folder in the embedded profile (paths as before), the bucket in the production one.

The S3 store runs against moto's in-process mock of S3 (``mock_aws``): every call goes through boto3
and botocore as against AWS. The production profile's wiring against moto's *server*, PostgreSQL and a
tracking server is tested in ``config/test_second_host.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from housing_platform.adapters.fallback_store import (
    FALLBACK_KEY,
    fallback_baseline_location,
    read_fallback_baseline,
    store_fallback_baseline,
)
from housing_platform.adapters.file_store import (
    FileStoreError,
    LocalFileStore,
    S3FileStore,
    file_store_for,
    open_file_store,
)
from housing_platform.config.settings import HousingSettings
from housing_platform.scoring.errors import ScoringError
from housing_platform.scoring.integrity import sha256_of

BUCKET = "files-test"
PRODUCTION_ENVIRON = {
    "HOUSING_PROFILE": "production",
    "HOUSING_POSTGRES_URL": "postgresql://postgres@127.0.0.1:5432/housing",
    "HOUSING_S3_BUCKET": BUCKET,
    "HOUSING_S3_PREFIX": "/team/housing/",
    "AWS_REGION": "us-east-1",
}
BASELINE = {"kind": "median_per_ocean_proximity", "medians": {"INLAND": 120_000.0}, "overall_median": 180_000.0,
            "train_rows": 10, "model_version": "4"}


@pytest.fixture
def s3(monkeypatch):
    """moto's mock of S3 with one bucket; credentials that keep boto3 away from any real account."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def test_the_local_store_keeps_every_file_at_its_state_folder_path(tmp_path: Path) -> None:
    settings = HousingSettings(home=tmp_path / "state", data_path=tmp_path / "d.csv")
    store = file_store_for(settings, {})
    assert isinstance(store, LocalFileStore)
    # The embedded profile's paths are the state folder's, as before the store existed.
    assert store.uri("quarantine/x.csv") == str(settings.quarantine_dir / "x.csv")
    assert store.write_text(FALLBACK_KEY, "{}") == str(settings.fallback_baseline_path)
    assert store.local_path("reports/drift/2026-01-01.html") == settings.reports_dir / "drift" / "2026-01-01.html"
    assert store.link("reports/drift_history.html") == (settings.reports_dir / "drift_history.html").as_uri()
    assert store.read_text("nothing/here.json") is None and not store.exists("nothing/here.json")
    assert store.fetch(settings.fallback_baseline_path) == settings.fallback_baseline_path
    assert store.key_of(settings.fallback_baseline_path) == FALLBACK_KEY
    # What a library writes into the local folder is already the stored file: publishing names it.
    folder = store.local_folder("reports/evaluation/run1")
    (folder / "residuals.png").write_bytes(b"png")
    assert store.publish_folder("reports/evaluation/run1", {"residuals": folder / "residuals.png"}) == {
        "residuals": str(settings.reports_dir / "evaluation" / "run1" / "residuals.png")
    }
    assert not list(settings.home.glob("scratch"))  # nothing is staged locally


@pytest.mark.parametrize("key", ["", ".", "/etc/passwd", "../outside.json", "reports/../../outside.json"])
def test_a_key_outside_the_store_is_refused_naming_it(tmp_path: Path, key: str) -> None:
    with pytest.raises(FileStoreError, match="file key must be a relative path without '..'; got"):
        LocalFileStore(tmp_path).write_text(key, "x")
    with pytest.raises(FileStoreError, match="file key must be a relative path"):
        S3FileStore(tmp_path, BUCKET, "p").uri(key)


def test_the_production_profile_picks_the_bucket_under_its_prefix(tmp_path: Path, s3) -> None:
    settings = HousingSettings(home=tmp_path / "state", data_path=tmp_path / "d.csv")
    store = file_store_for(settings, PRODUCTION_ENVIRON)
    assert isinstance(store, S3FileStore) and store.root == f"s3://{BUCKET}/team/housing"

    location = store.write_text("reports/drift/2026-01-01.json", '{"day": 1}')
    assert location == f"s3://{BUCKET}/team/housing/reports/drift/2026-01-01.json"
    stored = s3.get_object(Bucket=BUCKET, Key="team/housing/reports/drift/2026-01-01.json")
    assert stored["Body"].read() == b'{"day": 1}' and stored["ContentType"] == "application/json"
    assert store.read_text("reports/drift/2026-01-01.json") == '{"day": 1}'
    assert store.read_bytes("reports/drift/2026-01-02.json") is None
    assert store.link("reports/drift/2026-01-01.json") == location
    assert store.keys("reports") == ["reports/drift/2026-01-01.json"]
    store.delete("reports/drift/2026-01-01.json")
    assert store.keys("reports") == []


def test_a_file_written_by_a_library_is_uploaded_and_fetched_back_on_a_host_that_never_saw_it(tmp_path, s3) -> None:
    host_a = S3FileStore(tmp_path / "a", BUCKET, "p")
    folder = host_a.local_folder("artifacts/models")
    (folder / "run1.keras").write_bytes(b"weights")  # as Keras would, into the scratch folder
    assert folder.is_relative_to(tmp_path / "a" / "scratch")
    location = host_a.publish("artifacts/models/run1.keras")
    assert location == f"s3://{BUCKET}/p/artifacts/models/run1.keras"

    host_b = open_file_store(f"s3://{BUCKET}/p", tmp_path / "b")
    fetched = host_b.fetch(location)
    assert fetched.read_bytes() == b"weights" and fetched.is_relative_to(tmp_path / "b" / "scratch")
    with pytest.raises(FileNotFoundError, match=f"no object at s3://{BUCKET}/p/artifacts/models/run2.keras"):
        host_b.fetch(f"s3://{BUCKET}/p/artifacts/models/run2.keras")
    with pytest.raises(FileStoreError, match=r"s3://other/p/x.keras is not in this platform's bucket"):
        host_b.fetch("s3://other/p/x.keras")


def test_a_fetched_file_is_checked_against_the_hash_recorded_when_it_was_written(tmp_path, s3) -> None:
    store = S3FileStore(tmp_path, BUCKET, "p")
    location = store.write_bytes("artifacts/models/run1.keras", b"weights")
    recorded = sha256_of(store.fetch(location))
    assert store.fetch(location, recorded).read_bytes() == b"weights"

    s3.put_object(Bucket=BUCKET, Key="p/artifacts/models/run1.keras", Body=b"other weights")  # replaced in the bucket
    with pytest.raises(FileStoreError, match=rf"{location}: sha256 [0-9a-f]{{64}} differs from {recorded}"):
        store.fetch(location, recorded)
    local = LocalFileStore(tmp_path / "state")
    path = local.write_bytes("artifacts/models/run1.keras", b"weights")
    (tmp_path / "state" / "artifacts" / "models" / "run1.keras").write_bytes(b"edited")
    with pytest.raises(FileStoreError, match=f"{path}: sha256 .* differs from {recorded}"):
        local.fetch(path, recorded)


def test_the_fallback_baseline_goes_to_the_bucket_and_the_server_reads_it_from_there(tmp_path, s3, monkeypatch) -> None:
    settings = HousingSettings(home=tmp_path / "state", data_path=tmp_path / "d.csv")
    for name, value in PRODUCTION_ENVIRON.items():
        monkeypatch.setenv(name, value)
    location = fallback_baseline_location(settings)
    assert location == f"s3://{BUCKET}/team/housing/{FALLBACK_KEY}"
    with pytest.raises(ScoringError, match=f"no fallback baseline at {location}"):
        read_fallback_baseline(location, settings)

    assert store_fallback_baseline(file_store_for(settings), BASELINE) == location
    scorer = read_fallback_baseline(location, settings)
    assert (scorer.medians, scorer.overall_median, scorer.source) == ({"INLAND": 120_000.0}, 180_000.0, location)
    assert not settings.home.exists()  # written straight to the bucket: nothing on this host's disk

    s3.put_object(Bucket=BUCKET, Key=f"team/housing/{FALLBACK_KEY}", Body=b"{not json")
    with pytest.raises(ScoringError, match=f"fallback baseline {location}: cannot be read"):
        read_fallback_baseline(location, settings)
    s3.put_object(Bucket=BUCKET, Key=f"team/housing/{FALLBACK_KEY}", Body=json.dumps({**BASELINE, "kind": "x"}))
    with pytest.raises(ScoringError, match="kind 'x', expected 'median_per_ocean_proximity'"):
        read_fallback_baseline(location, settings)
