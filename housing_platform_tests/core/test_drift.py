"""Drift: a tidy per-column table, one verdict, Evidently's reports, and sampling that keeps the verdict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from housing_platform.config.settings import DEFAULT_DATA_PATH
from housing_platform.core.drift import (
    JSON_SUMMARY_KEY,
    TABLE_COLUMNS,
    VERDICT_DRIFT,
    VERDICT_INSUFFICIENT_DATA,
    VERDICT_NO_DRIFT,
    DriftConfig,
    DriftResult,
    compute_drift,
)
from housing_platform.core.schema import CATEGORICAL_COLUMN, FEATURE_COLUMNS, NUMERIC_FEATURE_COLUMNS
from housing_platform.core.validation import read_housing_csv, validate_housing_frame
from housing_platform.devtools.scenarios import make_scenario

COMPARED = [*FEATURE_COLUMNS, "prediction"]


def with_prediction(frame: pd.DataFrame) -> pd.DataFrame:
    """A stand-in model: the module must not care where predictions come from."""
    return frame.assign(prediction=45_000.0 + 42_000.0 * frame["median_income"])


@pytest.fixture(scope="module")
def split() -> tuple[pd.DataFrame, pd.DataFrame]:
    """3,000 reference rows and a disjoint held-out pool of the real districts (seeded permutation)."""
    valid = validate_housing_frame(read_housing_csv(DEFAULT_DATA_PATH)).valid
    order = np.random.default_rng(42).permutation(len(valid))
    reference = with_prediction(valid.iloc[order[:3_000]].reset_index(drop=True))
    held_out = valid.iloc[order[-4_000:]].reset_index(drop=True)
    return reference, held_out


@pytest.fixture(scope="module")
def reference(split) -> pd.DataFrame:
    return split[0]


def scenario(split, name: str, rows: int, seed: int = 0) -> pd.DataFrame:
    return with_prediction(make_scenario(split[1], name, rows, seed))


@pytest.fixture(scope="module")
def stable_result(split, reference) -> DriftResult:
    return compute_drift(reference, scenario(split, "stable", 1_000))


@pytest.fixture(scope="module")
def income_result(split, reference) -> DriftResult:
    return compute_drift(reference, scenario(split, "income_shift", 1_000))


def test_table_is_tidy_one_typed_row_per_compared_column(stable_result) -> None:
    table = stable_result.table
    assert tuple(table.columns) == TABLE_COLUMNS
    assert table["column"].tolist() == COMPARED
    assert table["score"].dtype == np.float64 and table["threshold"].dtype == np.float64
    assert table["drifted"].dtype == np.bool_
    assert table["column"].map(type).eq(str).all() and table["method"].map(type).eq(str).all()
    # Declared types decide the method: every numeric feature (and the prediction) is numerical.
    methods = table.set_index("column")["method"]
    assert (methods[[*NUMERIC_FEATURE_COLUMNS, "prediction"]] == "wasserstein").all()
    assert methods[CATEGORICAL_COLUMN] == "jensenshannon"
    assert (table["threshold"] >= 0.1).all() and table["score"].ge(0).all()


def test_stable_held_out_traffic_is_not_flagged(stable_result) -> None:
    assert stable_result.verdict == VERDICT_NO_DRIFT
    assert stable_result.check_passed and stable_result.rules_fired == []
    assert not stable_result.dataset_drift and stable_result.key_feature_drift == []
    assert stable_result.compared_current_rows == 1_000  # below max_rows: no sampling


def test_stable_traffic_at_min_rows_is_not_flagged_thanks_to_the_noise_floor(split, reference) -> None:
    result = compute_drift(reference, scenario(split, "stable", 200, seed=3))
    assert result.verdict == VERDICT_NO_DRIFT and result.rules_fired == []
    numerical = result.table[result.table["column"] != CATEGORICAL_COLUMN]
    assert (numerical["threshold"] > 0.12).all()  # 200 rows are noisy: thresholds rise above 0.1


def test_stable_traffic_on_a_large_day_fires_no_rule(split, reference) -> None:
    result = compute_drift(reference, scenario(split, "stable", 10_000, seed=4))
    assert result.verdict == VERDICT_NO_DRIFT and result.rules_fired == []
    assert result.prediction_drift is False and result.severe_feature_drift == []


RECODED = {"<1H OCEAN": "NEAR BAY", "NEAR BAY": "<1H OCEAN", "INLAND": "NEAR OCEAN", "NEAR OCEAN": "INLAND"}


@pytest.mark.parametrize(
    "column, change",
    [
        ("total_rooms", lambda values: values * 0.5),  # the smallest score of a x0.5 change in the benchmark
        ("households", lambda values: values * 1.7),
        ("housing_median_age", lambda values: values * 0.5),
        (CATEGORICAL_COLUMN, lambda values: values.replace(RECODED)),  # two pairs of labels swapped
    ],
    ids=["total_rooms x0.5", "households x1.7", "housing_median_age x0.5", "ocean_proximity re-coded"],
)
def test_a_strong_change_of_one_non_key_feature_fails_the_check_naming_it(split, reference, column, change) -> None:
    current = make_scenario(split[1], "stable", 1_000, 6)
    result = compute_drift(reference, with_prediction(current.assign(**{column: change(current[column])})))
    assert result.verdict == VERDICT_DRIFT and not result.check_passed
    assert result.rules_fired == ["severe_single_feature"]  # neither the dataset share nor a key feature
    assert result.severe_feature_drift == [column] and result.drifted_columns == [column]
    row = result.table.set_index("column").loc[column]
    severe = result.severe_thresholds[column]
    assert severe == pytest.approx(3 * row["threshold"])
    assert f"{column} scored {row['score']:.3f} ≥ its severe threshold {severe:.3f}" in result.reason
    assert result.summary()["rules_fired"] == ["severe_single_feature"]


def test_drift_of_the_prediction_alone_fails_the_check(split, reference) -> None:
    # Features as in training, outputs 25% higher: e.g. a model served with a wrong output scaler.
    current = scenario(split, "stable", 1_000, seed=7)
    result = compute_drift(reference, current.assign(prediction=current["prediction"] * 1.25))
    assert result.drifted_columns == [] and result.prediction_drift is True
    assert result.verdict == VERDICT_DRIFT and result.rules_fired == ["prediction_drift"]
    assert result.reason.startswith("prediction_drift: prediction drifted (score ")
    assert compute_drift(reference, current).rules_fired == []  # the same rows with their own predictions


def test_income_shift_is_flagged_on_the_key_feature_and_the_prediction(income_result) -> None:
    assert income_result.verdict == VERDICT_DRIFT
    assert not income_result.check_passed
    assert income_result.key_feature_drift == ["median_income"]
    assert income_result.prediction_drift is True
    assert not income_result.dataset_drift  # one feature of nine: caught by the key-feature rule
    assert income_result.rules_fired[:1] == ["key_feature"]
    assert "key_feature: median_income drifted (score " in income_result.reason


def test_coastal_only_is_flagged_as_dataset_drift(split, reference) -> None:
    result = compute_drift(reference, scenario(split, "coastal_only", 2_000))
    assert result.verdict == VERDICT_DRIFT and not result.check_passed
    assert result.dataset_drift and result.drifted_share >= 0.5
    assert {"ocean_proximity", "latitude", "longitude", "median_income"} <= set(result.drifted_columns)


def test_price_inflation_leaves_features_and_predictions_alone(split, reference) -> None:
    # Only the target moves: drift on inputs cannot see it (live quality does), so no drift is right.
    result = compute_drift(reference, scenario(split, "price_inflation", 1_000))
    assert result.verdict == VERDICT_NO_DRIFT and result.prediction_drift is False


def test_drifted_share_counts_features_only_and_matches_evidentlys_count(income_result) -> None:
    assert income_result.drifted_share == pytest.approx(1 / len(FEATURE_COLUMNS))
    counts = [m for m in income_result.snapshot.dict()["metrics"] if "DriftedColumnsCount" in m["config"]["type"]]
    assert counts[0]["value"]["share"] == pytest.approx(income_result.drifted_share)


def test_fewer_current_rows_than_min_rows_is_insufficient_data_and_passes(split, reference, tmp_path) -> None:
    result = compute_drift(reference, scenario(split, "income_shift", 199))
    assert result.verdict == VERDICT_INSUFFICIENT_DATA
    assert result.check_passed and not result.dataset_drift
    assert result.table.empty and tuple(result.table.columns) == TABLE_COLUMNS
    assert result.snapshot is None
    html_path, json_path = result.write_reports(tmp_path / "r.html", tmp_path / "r.json")
    assert "insufficient data" in html_path.read_text()
    assert json.loads(json_path.read_text())[JSON_SUMMARY_KEY]["verdict"] == VERDICT_INSUFFICIENT_DATA
    # A day without traffic may arrive as a table without even its columns.
    assert compute_drift(reference, pd.DataFrame()).verdict == VERDICT_INSUFFICIENT_DATA


def test_reports_hold_the_per_column_drift_table_and_the_verdict(income_result, tmp_path: Path) -> None:
    html_path, json_path = income_result.write_reports(tmp_path / "out" / "drift.html", tmp_path / "drift.json")
    html = html_path.read_text()
    assert "Drift is detected for" in html  # Evidently's per-column drift table widget
    for column in FEATURE_COLUMNS:
        assert f'"column_name": "{column}"' in html
    report = json.loads(json_path.read_text())
    assert {"metrics", "tests", JSON_SUMMARY_KEY} <= set(report)
    assert report[JSON_SUMMARY_KEY]["verdict"] == VERDICT_DRIFT
    assert [row["column"] for row in report[JSON_SUMMARY_KEY]["table"]] == COMPARED


@pytest.mark.parametrize("name", ["stable", "income_shift"])
def test_sampling_keeps_the_verdict_and_is_reproducible(split, reference, name) -> None:
    current = scenario(split, name, 20_000, seed=5)
    sampled = compute_drift(reference, current, DriftConfig(max_rows=4_000))
    full = compute_drift(reference, current, DriftConfig(max_rows=None))
    assert sampled.compared_current_rows == 4_000 and full.compared_current_rows == 20_000
    assert sampled.verdict == full.verdict
    assert (sampled.table["drifted"] == full.table["drifted"]).all()
    assert (sampled.table["score"] - full.table["score"]).abs().max() < 0.03
    again = compute_drift(reference, current, DriftConfig(max_rows=4_000))
    pd.testing.assert_frame_equal(sampled.table, again.table)


def test_inputs_are_validated_with_the_offending_name(split, reference) -> None:
    current = scenario(split, "stable", 300)
    with pytest.raises(ValueError, match="current table lacks the column.*median_income"):
        compute_drift(reference, current.drop(columns="median_income"))
    with pytest.raises(ValueError, match="reference table lacks the column.*prediction"):
        compute_drift(reference.drop(columns="prediction"), current)
    with pytest.raises(ValueError, match="key_features.*rooms_per_household"):
        compute_drift(reference, current, DriftConfig(key_features=("rooms_per_household",)))
    with pytest.raises(ValueError, match="reference table has 150 rows"):
        compute_drift(reference.head(150), current)
    with pytest.raises(ValueError, match="max_rows"):
        DriftConfig(min_rows=500, max_rows=100)


def test_features_only_when_no_prediction_column(split, reference) -> None:
    result = compute_drift(reference.drop(columns="prediction"), make_scenario(split[1], "stable", 500, 0),
                           prediction_column=None)
    assert result.table["column"].tolist() == list(FEATURE_COLUMNS)
    assert result.prediction_drift is None


def test_integer_columns_with_few_values_are_still_compared_as_numerical(split, reference) -> None:
    # Left to infer, Evidently could take a low-cardinality integer column for a categorical one.
    def coarse(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(housing_median_age=(frame["housing_median_age"] // 20 * 20).astype("int64"))

    result = compute_drift(coarse(reference), coarse(scenario(split, "stable", 1_000)))
    row = result.table.set_index("column").loc["housing_median_age"]
    assert row["method"] == "wasserstein" and not row["drifted"]
