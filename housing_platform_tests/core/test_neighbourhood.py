"""Neighbourhood prices: out of fold for training rows, the same values on every path, no pickled index."""

from __future__ import annotations

import zipfile

import numpy as np
import pandas as pd
import pytest

from housing_platform.core.features import (
    fit_transformer,
    load_transformer,
    neighbourhood_step,
    save_transformer,
    transform,
)
from housing_platform.core.neighbourhood import NEIGHBOURHOOD_COLUMNS, NeighbourhoodPrices
from housing_platform.core.schema import TARGET_COLUMN
from housing_platform_tests.factories import make_districts

SMALL = {"n_clusters": 4, "gamma": 2.0, "n_init": 1}


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    return make_districts(400, seed=3)


def _fit(frame: pd.DataFrame, k: int = 6, nearest: int = 2) -> NeighbourhoodPrices:
    return NeighbourhoodPrices(k, nearest).fit(frame, frame[TARGET_COLUMN])


def test_no_training_row_sees_its_own_label(train):
    prices = _fit(train)
    before = prices.out_of_fold(train)
    changed = train.copy()
    changed.loc[7, TARGET_COLUMN] *= 3.0  # one label tripled
    after = _fit(changed).out_of_fold(changed)
    # Row 7's own values cannot move (its label is left out); rows that count it as a neighbour do.
    np.testing.assert_array_equal(after[7], before[7])
    moved = np.flatnonzero((after != before).any(axis=1))
    assert len(moved) > 0 and 7 not in moved
    # A served row at row 7's very place uses every training row, its label included.
    served = prices.transform(train.iloc[[7]])
    assert not np.array_equal(served[0], before[7])


def test_fitting_a_pipeline_answers_the_training_rows_out_of_fold(train):
    prices = NeighbourhoodPrices(6, 2)
    np.testing.assert_array_equal(prices.fit_transform(train, train[TARGET_COLUMN]), prices.out_of_fold(train))
    transformer = fit_transformer(train, **SMALL)
    block = neighbourhood_step(transformer)
    n = len(NEIGHBOURHOOD_COLUMNS)
    # The scaler was fit on the out-of-fold values, so the training rows' block is standardised exactly.
    oof = transform(transformer, train, out_of_fold=True)[:, -n:].astype(np.float64)
    # float32 model matrix: means within a few float32 ulps of 0, stds of 1 (|x| <= ~5 standard deviations)
    np.testing.assert_allclose(oof.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(oof.std(axis=0), 1.0, rtol=1e-5)
    assert block["prices"].n_neighbours == 20 and block["prices"].n_nearest == 5  # the defaults


def test_out_of_fold_is_only_defined_for_the_rows_it_was_fit_on(train):
    prices = _fit(train)
    with pytest.raises(ValueError, match="training rows only"):
        prices.out_of_fold(train.iloc[::-1])
    with pytest.raises(ValueError, match="training rows only"):
        transform(fit_transformer(train, **SMALL), train.head(50), out_of_fold=True)


def test_rows_sharing_one_place_still_leave_exactly_themselves_out():
    frame = make_districts(60, seed=5)
    frame.loc[:9, ["latitude", "longitude"]] = frame.loc[0, ["latitude", "longitude"]].to_numpy()  # 10 at one spot
    frame.loc[:9, TARGET_COLUMN] = 100_000.0 + np.arange(10)  # distinct labels, to tell the rows apart
    log_values = np.log(frame[TARGET_COLUMN].to_numpy())
    for k in (1, 4, 9):  # the tree may or may not return the row itself among its k + 1 ties at distance 0
        values = _fit(frame, k=k, nearest=1).out_of_fold(frame)
        for row in range(10):
            assert values[row, 0] in np.delete(log_values[:10], row)  # the nearest is another row of the spot
            assert values[row, 3] == pytest.approx(np.log(1e-3))  # all k at distance 0


def test_the_index_is_not_persisted_and_is_rebuilt_from_the_arrays(train, tmp_path):
    transformer = fit_transformer(train, **SMALL)
    expected = transform(transformer, train)
    path = save_transformer(transformer, tmp_path / "t.skops")
    schema = zipfile.ZipFile(path).read("schema.json").decode()
    assert "KDTree" not in schema and "_tree" not in schema and "coordinates_" in schema
    loaded = load_transformer(path)
    assert "_tree" not in neighbourhood_step(loaded)["prices"].__dict__
    np.testing.assert_array_equal(transform(loaded, train), expected)


def test_bad_fits_are_refused_naming_the_rule(train):
    with pytest.raises(ValueError, match="needs the target"):
        NeighbourhoodPrices().fit(train)
    with pytest.raises(ValueError, match="n_neighbours must be in"):
        NeighbourhoodPrices(len(train)).fit(train, train[TARGET_COLUMN])
    with pytest.raises(ValueError, match="n_nearest must be in"):
        NeighbourhoodPrices(5, 6).fit(train, train[TARGET_COLUMN])
    with pytest.raises(ValueError, match="strictly positive"):
        NeighbourhoodPrices(5, 2).fit(train, train[TARGET_COLUMN] * 0)


def test_weighted_and_spread_columns_and_transformers_saved_before_them(train):
    prices = NeighbourhoodPrices(6, 2, n_weighted=3).fit(train, train[TARGET_COLUMN])
    rows = train.iloc[:40]
    values = prices.transform(rows)
    assert values.shape == (40, len(NEIGHBOURHOOD_COLUMNS)) and list(prices.get_feature_names_out()) == list(
        NEIGHBOURHOOD_COLUMNS)
    distances, indices = prices.tree().query(rows[["latitude", "longitude"]].to_numpy(), k=6)
    weights = 1.0 / (1e-3 + distances[:, :3])
    log_values = prices.log_values_[indices]
    # Same float64 formulas in the same order of terms, so only summation order may differ: 1e-12 of ~12.
    np.testing.assert_allclose(values[:, 4], (weights * log_values[:, :3]).sum(axis=1) / weights.sum(axis=1),
                               rtol=1e-12)
    np.testing.assert_allclose(values[:, 5], log_values.std(axis=1), rtol=1e-12)
    # A transformer saved before the two columns existed has no n_weighted: its four columns, unchanged.
    legacy = NeighbourhoodPrices(6, 2).fit(train, train[TARGET_COLUMN])
    del legacy.__dict__["n_weighted"]
    assert legacy.transform(rows).shape == (40, 4) and len(legacy.get_feature_names_out()) == 4
    np.testing.assert_array_equal(legacy.transform(rows), values[:, :4])
    np.testing.assert_array_equal(legacy.out_of_fold(train)[:, :4], prices.out_of_fold(train)[:, :4])
    with pytest.raises(ValueError, match="n_weighted must be >= 0"):
        NeighbourhoodPrices(6, 2, n_weighted=-1).fit(train, train[TARGET_COLUMN])
