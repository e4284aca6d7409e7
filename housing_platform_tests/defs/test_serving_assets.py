"""The `batch_predictions` asset: the champion's fast path over a file, materialized with real resources."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from housing_platform.core.schema import FEATURE_COLUMNS
from housing_platform.defs.resources import HousingStateResource, MLflowResource
from housing_platform.defs.serving.assets import batch_predictions
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
    assert metadata["scored_rows"].value == len(source) - 1
    assert metadata["rejected_rows"].value == 1
    assert metadata["path"].value == str(written)


def test_batch_predictions_defaults_to_the_platform_district_csv(models, tmp_path):
    csv = tmp_path / "california_housing.csv"
    models.test.head(300).to_csv(csv, index=False)

    result = dg.materialize([batch_predictions], resources=_resources(models, tmp_path / "state", csv))

    assert result.success
    metadata = result.asset_materializations_for_node("batch_predictions")[0].metadata
    assert metadata["input_path"].value == str(csv)
    assert metadata["dagster/row_count"].value == 300
