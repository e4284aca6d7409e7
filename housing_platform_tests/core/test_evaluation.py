"""Metrics on hand-computed examples, slices, baselines and plot files."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from housing_platform.core.evaluation import (
    SLICE_COLUMNS,
    baseline_predictions,
    income_quantile_edges,
    slice_metrics,
    write_loss_curves,
    write_plots,
)
from housing_platform.core.metrics import regression_metrics
from housing_platform.core.schema import OCEAN_PROXIMITY_CATEGORIES, TARGET_COLUMN
from housing_platform_tests.factories import make_districts


def test_metrics_on_a_hand_computed_example():
    y = [1.0, 2.0, 3.0, 4.0]
    yhat = [1.0, 3.0, 2.0, 6.0]  # errors 0, 1, -1, 2
    metrics = regression_metrics(y, yhat)
    assert metrics["rmse"] == pytest.approx(math.sqrt((0 + 1 + 1 + 4) / 4))
    assert metrics["mae"] == pytest.approx((0 + 1 + 1 + 2) / 4)
    assert metrics["r2"] == pytest.approx(1 - 6 / 5)  # SSE 6, SST (2.25 + .25 + .25 + 2.25) = 5
    assert metrics["mape"] == pytest.approx((0 + 1 / 2 + 1 / 3 + 2 / 4) / 4)
    assert metrics["count"] == 4


def test_metrics_agree_with_scikit_learn():
    from sklearn import metrics as sk

    rng = np.random.default_rng(0)
    y = rng.uniform(10_000, 500_000, 300)
    yhat = y + rng.normal(0, 40_000, 300)
    ours = regression_metrics(y, yhat)
    assert ours["rmse"] == pytest.approx(sk.root_mean_squared_error(y, yhat))
    assert ours["mae"] == pytest.approx(sk.mean_absolute_error(y, yhat))
    assert ours["r2"] == pytest.approx(sk.r2_score(y, yhat))
    assert ours["mape"] == pytest.approx(sk.mean_absolute_percentage_error(y, yhat))


def test_metrics_edge_cases():
    perfect = regression_metrics([5.0, 7.0], [5.0, 7.0])
    assert perfect["rmse"] == 0 and perfect["r2"] == 1 and perfect["mape"] == 0
    empty = regression_metrics([], [])
    assert empty["count"] == 0 and math.isnan(empty["rmse"]) and math.isnan(empty["r2"])
    assert math.isnan(regression_metrics([3.0], [4.0])["r2"])  # one row: R² undefined
    assert math.isnan(regression_metrics([3.0, 3.0], [3.0, 4.0])["r2"])  # constant target
    assert regression_metrics([0.0, 2.0], [1.0, 1.0])["mape"] == pytest.approx(0.5)  # y = 0 skipped
    with pytest.raises(ValueError):
        regression_metrics([1.0, 2.0], [1.0])


def test_slices_by_category_and_income_quintile():
    frame = pd.DataFrame(
        {
            "ocean_proximity": ["INLAND"] * 4 + ["NEAR BAY"] * 6,
            "median_income": np.arange(1.0, 11.0),  # quintiles of two rows each
        }
    )
    y = np.arange(10.0) * 10 + 100
    yhat = y + np.array([1, -1, 2, -2, 3, -3, 4, -4, 5, -5], dtype=float)
    table = slice_metrics(frame, y, yhat)
    assert list(table.columns) == SLICE_COLUMNS

    overall = table[table["slice_by"] == "all"].iloc[0]
    assert overall["count"] == 10 and overall["rmse"] == pytest.approx(regression_metrics(y, yhat)["rmse"])

    by_ocean = table[table["slice_by"] == "ocean_proximity"].set_index("slice")
    assert list(by_ocean.index) == list(OCEAN_PROXIMITY_CATEGORIES)  # every category, even absent ones
    assert by_ocean.loc["INLAND", "count"] == 4 and by_ocean.loc["INLAND", "mae"] == pytest.approx(1.5)
    assert by_ocean.loc["NEAR BAY", "rmse"] == pytest.approx(math.sqrt((9 + 9 + 16 + 16 + 25 + 25) / 6))
    assert by_ocean.loc["ISLAND", "count"] == 0 and math.isnan(by_ocean.loc["ISLAND", "rmse"])

    quintiles = table[table["slice_by"] == "median_income_quintile"]
    assert quintiles["count"].tolist() == [2, 2, 2, 2, 2]
    assert quintiles["mae"].tolist() == pytest.approx([1, 2, 3, 4, 5])
    np.testing.assert_allclose(quintiles["lower"], [1.0, 2.8, 4.6, 6.4, 8.2])
    assert quintiles["upper"].iloc[-1] == 10.0
    assert quintiles["slice"].iloc[0].startswith("Q1 [1.00, 2.80)")


def test_quintile_edges_come_from_the_evaluated_rows():
    edges = income_quantile_edges([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert edges[0] == 1.0 and edges[-1] == 6.0 and len(edges) == 6
    frame = pd.DataFrame({"ocean_proximity": ["INLAND"] * 5, "median_income": [5.0] * 5})  # ties
    table = slice_metrics(frame, np.ones(5), np.ones(5))
    assert table[table["slice_by"] == "median_income_quintile"]["count"].sum() == 5


@pytest.fixture(autouse=True)
def one_openmp_thread():
    """HistGradientBoosting's OpenMP threads crawl when other processes hold the cores: use one."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.fixture(scope="module")
def split_and_transformer():
    from housing_platform.core.features import fit_transformer

    frame = make_districts(1_200)
    train, test = frame.iloc[:900].reset_index(drop=True), frame.iloc[900:].reset_index(drop=True)
    return train, test, fit_transformer(train, n_clusters=5, gamma=2.0, n_init=1)


def test_baselines(split_and_transformer):
    train, test, transformer = split_and_transformer
    predictions = baseline_predictions(train, test, transformer)
    assert set(predictions) == {
        "median_per_ocean_proximity", "linear_regression", "hist_gradient_boosting", "textbook_random_forest"
    }
    for values in predictions.values():
        assert values.shape == (len(test),) and np.isfinite(values).all()

    medians = train.groupby("ocean_proximity")[TARGET_COLUMN].median()
    np.testing.assert_allclose(predictions["median_per_ocean_proximity"], test["ocean_proximity"].map(medians))

    y = test[TARGET_COLUMN].to_numpy()
    rmse = {name: regression_metrics(y, values)["rmse"] for name, values in predictions.items()}
    # The value is linear in income + an ocean offset: the linear model nearly nails it, all beat the heuristic.
    assert rmse["linear_regression"] < 15_000
    assert rmse["hist_gradient_boosting"] < rmse["median_per_ocean_proximity"]
    assert rmse["textbook_random_forest"] < rmse["median_per_ocean_proximity"]
    again = baseline_predictions(train, test, transformer)  # seeded: same numbers
    for name, values in predictions.items():
        np.testing.assert_array_equal(again[name], values)


def test_heuristic_falls_back_to_the_overall_median(split_and_transformer):
    train, test, transformer = split_and_transformer
    odd = test.head(3).assign(ocean_proximity="ISLAND")  # absent from train
    predictions = baseline_predictions(train, odd, transformer)["median_per_ocean_proximity"]
    np.testing.assert_allclose(predictions, train[TARGET_COLUMN].median())


def test_plots_are_written_as_png(tmp_path):
    rng = np.random.default_rng(0)
    frame = make_districts(300)
    y = frame[TARGET_COLUMN].to_numpy()
    yhat = y + rng.normal(0, 30_000, len(y))
    paths = write_plots(y, yhat, tmp_path / "plots", slice_metrics(frame, y, yhat), title="test")
    assert set(paths) == {"predicted_vs_actual", "residuals", "slice_errors"}
    for path in paths.values():
        assert path.parent == tmp_path / "plots"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5_000
    assert set(write_plots(y, yhat, tmp_path / "no_slices")) == {"predicted_vs_actual", "residuals"}


def test_loss_curves_are_written_as_png(tmp_path):
    history = {"loss": [1.0, 0.5, 0.4], "val_loss": [1.1, 0.6, 0.7], "val_rmse": [60_000.0, 45_000.0, 47_000.0]}
    path = write_loss_curves(history, tmp_path / "curves")
    assert path == tmp_path / "curves" / "loss_curves.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
