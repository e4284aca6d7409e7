"""The fallback baseline (scoring/fallback.py) is the evaluation report's heuristic, stored with every version."""

from __future__ import annotations

import json

import numpy as np
import pytest

from housing_platform.adapters.fallback_store import store_fallback_baseline
from housing_platform.adapters.file_store import LocalFileStore
from housing_platform.adapters.mlflow_registry import model_artifacts
from housing_platform.core import evaluation, features
from housing_platform.core.schema import CATEGORICAL_COLUMN, FEATURE_COLUMNS
from housing_platform.scoring.errors import ScoringError
from housing_platform.scoring.fallback import (
    FALLBACK_ARTIFACT,
    FallbackScorer,
    fit_fallback_baseline,
)


def test_the_fallback_scores_exactly_like_the_evaluation_reports_median_heuristic(models, tmp_path) -> None:
    train, test = models.train.head(500), models.test.head(500)  # 500 rows: the baselines it also fits stay quick
    transformer = features.fit_transformer(train)  # fit on the same rows: the baselines' out-of-fold block needs them
    expected = evaluation.baseline_predictions(train, test, transformer)["median_per_ocean_proximity"]
    path = store_fallback_baseline(LocalFileStore(tmp_path), fit_fallback_baseline(train))
    scorer = FallbackScorer.read(path)
    frame = test[list(FEATURE_COLUMNS)]
    actual = scorer.score_arrays(frame.to_numpy()[:, :0], scorer.category_codes(frame[CATEGORICAL_COLUMN].to_numpy()))
    np.testing.assert_array_equal(actual, expected)  # the same medians looked up: bitwise equal
    assert scorer.out_of_range({CATEGORICAL_COLUMN: ["INLAND"]}) == [""]


def test_an_unknown_category_gets_the_overall_median(models) -> None:
    baseline = fit_fallback_baseline(models.train)
    scorer = FallbackScorer.from_dict(baseline)
    assert scorer.score_arrays(np.empty((1, 0)), scorer.category_codes(["ATLANTIS"]))[0] == baseline["overall_median"]


def test_every_version_stores_its_baseline_among_its_model_files(models, tmp_path) -> None:
    artifacts = model_artifacts(tmp_path, "t.skops", "n.keras", {}, models.train)
    assert json.loads((tmp_path / f"{FALLBACK_ARTIFACT}.json").read_text()) == fit_fallback_baseline(models.train)
    assert artifacts[FALLBACK_ARTIFACT] == str(tmp_path / f"{FALLBACK_ARTIFACT}.json")


@pytest.mark.parametrize("content", [None, "{not json", '{"kind": "linear"}', '{"kind": "median_per_ocean_proximity"}'])
def test_a_missing_or_malformed_baseline_file_is_an_error_naming_it(tmp_path, content) -> None:
    path = tmp_path / "fallback_baseline.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ScoringError, match=str(path)):
        FallbackScorer.read(path)
