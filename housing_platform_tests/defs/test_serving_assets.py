"""The serving group with real resources: `batch_predictions` (the champion's fast path over a file) and
the check `endpoint_serves_champion` on the live endpoint's captures (served = promoted)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from housing_platform.adapters.capture.records import CaptureRecord
from housing_platform.adapters.capture.store import CaptureStore
from housing_platform.adapters.mlflow_registry import MODEL_NAME, ModelRegistry
from housing_platform.core.schema import EXAMPLE_DISTRICT, FEATURE_COLUMNS
from housing_platform.defs.resources import CaptureStoreResource, HousingStateResource, MLflowResource
from housing_platform.defs.serving.assets import batch_predictions, live_endpoint_captures
from housing_platform.defs.serving.checks import ENDPOINT_CHECK, endpoint_serves_champion, served_versions_verdict
from housing_platform.defs.serving.config import EndpointCheckConfig
from housing_platform.devtools.tiny_models import RegisteredModels
from housing_platform.scoring.batch import BATCH_PRECISION
from housing_platform.scoring.verification import check_skew, load_fast_scorer

pytestmark = pytest.mark.slow


def _resources(models: RegisteredModels, home, data_path) -> dict:
    return {
        "housing_state": HousingStateResource(home=str(home), data_path=str(data_path)),
        "mlflow_tracking": MLflowResource(tracking_uri=models.tracking_uri, artifact_root=models.artifact_root),
    }


def test_batch_predictions_scores_with_the_version_its_alias_names_not_the_champion(models, tmp_path):
    """`model_alias` picks the version: here the registered, never-promoted version 2."""
    import mlflow

    registry = models.registry()
    registry.client.set_registered_model_alias(models.model_name, "batch_candidate", models.versions[1])
    champion = registry.champion().version
    assert champion != models.versions[1]
    source = models.test.head(200).drop(columns=["median_house_value"])
    path = tmp_path / "districts.csv"
    source.to_csv(path, index=False)

    result = dg.materialize(
        [batch_predictions],
        resources=_resources(models, tmp_path / "state", tmp_path / "unused.csv"),
        run_config=dg.RunConfig(
            {"batch_predictions": {"config": {"input_path": str(path), "model_alias": "batch_candidate"}}}
        ),
    )

    assert result.success
    metadata = result.asset_materializations_for_node("batch_predictions")[0].metadata
    assert metadata["model_version"].value == models.versions[1]
    scored = pd.read_parquet(metadata["path"].value)
    assert (scored["model_version"] == models.versions[1]).all()
    candidate = mlflow.pyfunc.load_model(f"models:/{models.model_name}/{models.versions[1]}").predict(
        source[list(FEATURE_COLUMNS)]
    )
    # Equal to the registered model within the float32 error bound of each row (scoring/error_bound.py).
    scorer = load_fast_scorer(f"models:/{models.model_name}/{models.versions[1]}", precision=BATCH_PRECISION)
    check = check_skew(scorer, source, scored["prediction"], candidate)
    assert check.passed, check.describe()
    champion_predictions = mlflow.pyfunc.load_model(f"models:/{models.model_name}/{champion}").predict(
        source[list(FEATURE_COLUMNS)]
    )
    assert not check_skew(scorer, source, scored["prediction"], champion_predictions).passed


def test_batch_predictions_scores_a_parquet_file_with_the_champion_and_records_the_version(models, tmp_path):
    import mlflow

    source = models.test.head(800).drop(columns=["median_house_value"]).copy()
    source.loc[5, "total_rooms"] = -1.0  # breaks a rule: kept, unscored
    source.loc[6, "total_bedrooms"] = np.nan  # allowed: imputed
    source["district_id"] = np.arange(len(source))  # extra columns travel along
    path = tmp_path / "districts.parquet"
    source.to_parquet(path, index=False)
    home = tmp_path / "state"

    result = dg.materialize(
        [batch_predictions],
        resources=_resources(models, home, tmp_path / "unused.csv"),
        run_config=dg.RunConfig({"batch_predictions": {"config": {"input_path": str(path)}}}),
    )

    assert result.success
    champion = models.registry().champion().version
    written = home / "predictions" / f"batch_predictions_{result.run_id}.parquet"
    scored = pd.read_parquet(written)
    assert len(scored) == len(source)
    assert (scored["model_version"] == champion).all()
    assert list(scored["district_id"]) == list(range(len(source)))
    assert np.isnan(scored.loc[5, "prediction"]) and "total_rooms > 0" in scored.loc[5, "rejected_rules"]
    valid = scored.drop(index=5)
    expected = mlflow.pyfunc.load_model(f"models:/{models.model_name}/{champion}").predict(
        source.drop(index=5)[list(FEATURE_COLUMNS)]
    )
    scorer = load_fast_scorer(f"models:/{models.model_name}/{champion}", precision=BATCH_PRECISION)
    check = check_skew(scorer, source.drop(index=5), valid["prediction"], expected)
    assert check.passed, check.describe()

    metadata = result.asset_materializations_for_node("batch_predictions")[0].metadata
    assert metadata["model_version"].value == champion
    assert metadata["scored_rows_raw"].value == len(source) - 1
    assert metadata["rejected_rows_raw"].value == 1
    assert metadata["path"].value == str(written)


def test_batch_predictions_defaults_to_the_platform_district_csv(models, tmp_path):
    csv = tmp_path / "california_housing.csv"
    models.test.head(300).to_csv(csv, index=False)

    result = dg.materialize([batch_predictions], resources=_resources(models, tmp_path / "state", csv))

    assert result.success
    metadata = result.asset_materializations_for_node("batch_predictions")[0].metadata
    assert metadata["input_path"].value == str(csv)
    assert metadata["dagster/row_count"].value == 300


# -- endpoint_serves_champion: the versions in recent captures against the champion alias -------------

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
PROMOTED = NOW - timedelta(minutes=30)  # champion moved to version 2 half an hour ago


def _captures(*spans: tuple[str, float, float]) -> pd.DataFrame:
    """Captures of (version, from, to) minutes before NOW, one a minute."""
    rows = [(NOW - timedelta(minutes=m), version) for version, start, end in spans for m in np.arange(start, end, -1.0)]
    frame = pd.DataFrame(rows, columns=["captured_at", "model_version"])
    frame["captured_at"] = pd.to_datetime(frame["captured_at"], utc=True)
    return frame.sort_values("captured_at", ignore_index=True)


@pytest.mark.parametrize(
    ("spans", "passed", "said"),
    [
        # A server that refused version 2 keeps serving 1: fails, naming both.
        ([("1", 50, 0)], False, "served version 1 (28 captures, the latest at 2026-06-01T11:59:00+00:00) while "
                                "`champion` is version 2"),
        # The swap: version 1 until a few minutes after the move, then only 2.
        ([("1", 50, 27), ("2", 27, 0)], True, "came from it: 27 of the 50 captures"),
        # A replica left behind: 1 and 2 interleaved after the first capture from 2.
        ([("2", 20, 0), ("1", 10, 5)], False, "served version 1 (5 captures"),
        # Old traffic only: nothing recent to judge by.
        ([("1", 180, 90)], True, "No captures since 2026-06-01T11:00:00+00:00"),
        # Captures of the old version right after the move (within settle_seconds), none since.
        ([("1", 40, 29)], True, "too early to tell"),
    ],
    ids=["refused_champion", "clean_swap", "lagging_replica", "idle_endpoint", "within_settle_time"],
)
def test_the_verdict_holds_captures_after_the_swap_against_the_champion(spans, passed, said) -> None:
    verdict = served_versions_verdict(_captures(*spans), "2", PROMOTED, NOW, EndpointCheckConfig())
    assert verdict.passed is passed, verdict.description
    assert said in verdict.description


def test_without_a_promotion_time_the_first_capture_of_the_champion_marks_the_swap() -> None:
    """An alias moved by hand has no `promoted_at`: the swap seen in the captures is the evidence."""
    config = EndpointCheckConfig()
    assert served_versions_verdict(_captures(("1", 50, 10), ("2", 10, 0)), "2", None, NOW, config).passed
    assert not served_versions_verdict(_captures(("1", 50, 0)), "2", None, NOW, config).passed


@pytest.fixture
def endpoint(tmp_path):
    """A real MLflow registry whose champion is version 2 (promoted over 1) and an empty capture store."""
    import mlflow

    previous_uri = mlflow.get_tracking_uri()
    registry = ModelRegistry(f"sqlite:///{tmp_path / 'mlflow.db'}", (tmp_path / "artifacts").as_uri())
    registry.client.create_registered_model(MODEL_NAME)
    for _ in range(2):
        version = registry.client.create_model_version(MODEL_NAME, source=(tmp_path / "model").as_uri())
        registry.promote(version.version)
    url = f"sqlite:///{tmp_path / 'capture.db'}"
    yield registry, url
    mlflow.set_tracking_uri(previous_uri)
    mlflow.set_registry_uri(previous_uri)


def _evaluate(registry: ModelRegistry, capture_url: str, **config) -> dg.AssetCheckEvaluation:
    result = dg.materialize(
        [live_endpoint_captures, endpoint_serves_champion],
        selection=dg.AssetSelection.checks(endpoint_serves_champion),
        resources={
            "capture_store": CaptureStoreResource(url=capture_url),
            "mlflow_tracking": MLflowResource(tracking_uri=registry.tracking_uri, artifact_root=registry.artifact_root),
        },
        run_config={"ops": {f"live_endpoint_captures_{ENDPOINT_CHECK}": {"config": config}}},
    )
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


def _write(capture_url: str, version: str, start: datetime, n: int) -> None:
    """``n`` captures of the example district scored by ``version``, one a millisecond from ``start``."""
    records = [
        CaptureRecord.from_features(EXAMPLE_DISTRICT, prediction=200_000.0, model_version=version, latency_ms=1.0,
                                    captured_at=start + timedelta(milliseconds=i))
        for i in range(n)
    ]
    with CaptureStore(capture_url) as store:
        store.insert_captures(records)


def test_the_check_fails_naming_both_versions_when_the_endpoint_serves_the_old_one(endpoint) -> None:
    registry, capture_url = endpoint
    _write(capture_url, "1", datetime.now(UTC), 40)  # after champion moved to 2: a server that refused it

    evaluation = _evaluate(registry, capture_url, settle_seconds=0.0)

    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert "served version 1 (40 captures" in evaluation.description
    assert "while `champion` is version 2 (since " in evaluation.description
    metadata = {key: value.value for key, value in evaluation.metadata.items()}
    assert metadata["champion_version"] == "2" and metadata["latest_capture_version"] == "1"
    assert metadata["recent_captures_raw"] == 40 and metadata["captures_from_other_versions_after_settling_raw"] == 40


def test_the_check_passes_once_the_endpoint_serves_the_champion_and_says_why_when_idle(endpoint) -> None:
    registry, capture_url = endpoint
    idle = _evaluate(registry, capture_url)
    assert idle.passed and "No captures since" in idle.description and "`champion` is version 2" in idle.description

    now = datetime.now(UTC)
    _write(capture_url, "1", now, 10)  # the last requests before the swap
    _write(capture_url, "2", now + timedelta(milliseconds=100), 10)
    swapped = _evaluate(registry, capture_url, settle_seconds=0.0)

    assert swapped.passed, swapped.description
    assert "from `champion` version 2" in swapped.description and "10 of the 20 captures" in swapped.description
    assert "| 1 | 10 |" in swapped.metadata["versions_seen"].value
