"""Feature pipeline: fit on train only, skops persistence with an explicit trust list, numpy port."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import skops.io as sio

from housing_platform.core import features
from housing_platform.core.features import (
    ENGINEERED_COLUMNS,
    TRUSTED_TYPES,
    build_transformer,
    feature_names,
    fit_transformer,
    fitted_statistics,
    load_transformer,
    save_transformer,
    transform,
)
from housing_platform.core.neighbourhood import NEIGHBOURHOOD_COLUMNS
from housing_platform.core.schema import (
    NUMERIC_FEATURE_COLUMNS,
    OCEAN_PROXIMITY_CATEGORIES,
    TARGET_COLUMN,
)
from housing_platform_tests.factories import make_districts

SMALL = {"n_clusters": 6, "gamma": 2.0, "n_init": 1}  # fast k-means for tests


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    return make_districts(1_500, seed=0, missing_bedrooms_share=0.05)


@pytest.fixture(scope="module")
def test_rows() -> pd.DataFrame:
    return make_districts(500, seed=1, shift=0.5, missing_bedrooms_share=0.05)  # deliberately unlike train


@pytest.fixture(scope="module")
def fitted(train):
    return fit_transformer(train, **SMALL)


def engineered_by_hand(frame: pd.DataFrame, medians: pd.Series) -> pd.DataFrame:
    """The documented formulas, written out independently of the module."""
    x = frame[list(NUMERIC_FEATURE_COLUMNS)].fillna(medians)
    return pd.DataFrame(
        {
            "longitude": x["longitude"],
            "latitude": x["latitude"],
            "housing_median_age": x["housing_median_age"],
            "log_total_rooms": np.log(x["total_rooms"]),
            "log_total_bedrooms": np.log(x["total_bedrooms"]),
            "log_population": np.log(x["population"]),
            "log_households": np.log(x["households"]),
            "log_median_income": np.log(x["median_income"]),
            "log_rooms_per_household": np.log(x["total_rooms"] / x["households"]),
            "log_bedrooms_per_room": np.log(x["total_bedrooms"] / x["total_rooms"]),
            "log_population_per_household": np.log(x["population"] / x["households"]),
            "median_income": x["median_income"],
        }
    )


def test_statistics_come_from_train_only(fitted, train, test_rows):
    stats = fitted_statistics(fitted)
    train_medians = train[list(NUMERIC_FEATURE_COLUMNS)].median()
    everything = pd.concat([train, test_rows], ignore_index=True)
    all_medians = everything[list(NUMERIC_FEATURE_COLUMNS)].median()

    assert stats["imputer_medians"] == pytest.approx(train_medians.to_dict())
    train_features = engineered_by_hand(train, train_medians)
    assert list(stats["scaler_means"].values()) == pytest.approx(train_features.mean().to_numpy())
    assert list(stats["scaler_scales"].values()) == pytest.approx(train_features.std(ddof=0).to_numpy())
    assert stats["n_samples_fit"] == len(train)

    # ... and they differ from what fitting on all rows (train + test) would give: no leakage.
    all_features = engineered_by_hand(everything, all_medians)
    for column in ("median_income", "households", "total_rooms"):
        assert stats["imputer_medians"][column] != pytest.approx(all_medians[column], rel=1e-3)
    assert stats["scaler_means"]["median_income"] != pytest.approx(all_features["median_income"].mean(), rel=1e-3)
    # The cluster centres lie inside the train rows' area.
    centres = np.array(stats["cluster_centers_lat_lon"])
    assert centres[:, 0].min() >= train["latitude"].min() and centres[:, 1].max() <= train["longitude"].max()


def test_only_the_neighbourhood_block_reads_the_target(train):
    a = transform(fit_transformer(train, **SMALL), train)
    b = transform(fit_transformer(train.assign(**{TARGET_COLUMN: 1.0}), **SMALL), train)
    n = len(NEIGHBOURHOOD_COLUMNS)
    np.testing.assert_array_equal(a[:, :-n], b[:, :-n])
    assert not np.array_equal(a[:, -n:], b[:, -n:])
    without = fit_transformer(train.assign(**{TARGET_COLUMN: 1.0}), **SMALL, neighbours=0)
    np.testing.assert_array_equal(transform(without, train), a[:, :-n])


def test_numpy_reimplementation_from_documented_attributes(fitted, test_rows):
    """The recipe in the module docstring, using exactly the attribute paths it names."""
    t = fitted
    x = test_rows[list(NUMERIC_FEATURE_COLUMNS)].to_numpy(dtype=np.float64)
    medians = t["impute"].named_transformers_["median"].statistics_
    x = np.where(np.isnan(x), medians, x)
    col = {name: x[:, j] for j, name in enumerate(NUMERIC_FEATURE_COLUMNS)}
    engineered = np.column_stack(
        [
            col["longitude"], col["latitude"], col["housing_median_age"],
            np.log(col["total_rooms"]), np.log(col["total_bedrooms"]), np.log(col["population"]),
            np.log(col["households"]), np.log(col["median_income"]),
            np.log(col["total_rooms"] / col["households"]), np.log(col["total_bedrooms"] / col["total_rooms"]),
            np.log(col["population"] / col["households"]), col["median_income"],
        ]
    )
    scale = t["features"].named_transformers_["numeric"]["scale"]
    scaled = (engineered - scale.mean_) / scale.scale_
    geo = t["features"].named_transformers_["geo"]
    c = geo.cluster_centers_
    squared = (col["latitude"][:, None] - c[:, 0]) ** 2 + (col["longitude"][:, None] - c[:, 1]) ** 2
    assert geo.kernel == "biweight"  # the default
    similarity = np.maximum(1.0 - geo.gamma * squared / 2, 0.0) ** 2
    onehot_encoder = t["features"].named_transformers_["category"]
    onehot = (test_rows["ocean_proximity"].to_numpy()[:, None] == onehot_encoder.categories_[0][None, :]).astype(float)
    # Step 5, written out by brute force: the k nearest training rows by Euclidean distance in degrees.
    block = t["features"].named_transformers_["neighbourhood"]
    prices = block["prices"]
    k, nearest, weighted = prices.n_neighbours, prices.n_nearest, prices.weighted()
    points = np.column_stack([col["latitude"], col["longitude"]])
    distances = np.sqrt(((points[:, None, :] - prices.coordinates_[None, :, :]) ** 2).sum(axis=2))
    order = np.argsort(distances, axis=1, kind="stable")[:, :k]
    weights = 1.0 / (1e-3 + np.take_along_axis(distances, order[:, :weighted], axis=1))
    neighbourhood = np.column_stack([
        np.median(prices.log_values_[order[:, :nearest]], axis=1),
        np.median(prices.log_values_[order], axis=1),
        np.median(prices.log_values_per_income_[order], axis=1),
        np.log(1e-3 + np.take_along_axis(distances, order, axis=1).mean(axis=1)),
        (weights * prices.log_values_[order[:, :weighted]]).sum(axis=1) / weights.sum(axis=1),
        prices.log_values_[order].std(axis=1),
    ])
    neighbourhood = (neighbourhood - block["scale"].mean_) / block["scale"].scale_
    by_hand = np.hstack([scaled, similarity, onehot, neighbourhood])

    # Where training rows tie at the k-th (or n_nearest-th, n_weighted-th) distance, which of them is "nearest" is the
    # index's choice (the same on every path, since every path asks the same index): compare the other rows.
    ranked = np.sort(distances, axis=1)
    untied = (ranked[:, k - 1] != ranked[:, k]) & (ranked[:, nearest - 1] != ranked[:, nearest]) & (
        ranked[:, weighted - 1] != ranked[:, weighted])
    assert untied.mean() > 0.9
    np.testing.assert_allclose(transform(t, test_rows)[untied], by_hand[untied].astype(np.float32), rtol=1e-5, atol=1e-5)
    assert feature_names(t) == [
        *ENGINEERED_COLUMNS,
        *(f"cluster_{i}_similarity" for i in range(SMALL["n_clusters"])),
        *(f"ocean_proximity_{c}" for c in OCEAN_PROXIMITY_CATEGORIES),
        *NEIGHBOURHOOD_COLUMNS,
    ]


def test_gaussian_kernel_and_transformers_saved_before_the_kernel_choice(train, test_rows, tmp_path):
    gaussian = fit_transformer(train, **SMALL, kernel="gaussian")
    geo = gaussian["features"].named_transformers_["geo"]
    c = geo.cluster_centers_
    squared = (test_rows["latitude"].to_numpy()[:, None] - c[:, 0]) ** 2 + (
        test_rows["longitude"].to_numpy()[:, None] - c[:, 1]
    ) ** 2
    n_engineered = len(ENGINEERED_COLUMNS)
    similarities = transform(gaussian, test_rows)[:, n_engineered : n_engineered + SMALL["n_clusters"]]
    np.testing.assert_allclose(similarities, np.exp(-geo.gamma * squared).astype(np.float32), rtol=1e-6, atol=1e-7)
    assert fitted_statistics(gaussian)["cluster_kernel"] == "gaussian"

    # A transformer written before ClusterSimilarity had a `kernel` keeps its Gaussian features.
    del geo.kernel
    legacy = load_transformer(save_transformer(gaussian, tmp_path / "legacy.skops"))
    assert not hasattr(legacy["features"].named_transformers_["geo"], "kernel")
    np.testing.assert_array_equal(transform(legacy, test_rows)[:, n_engineered : n_engineered + SMALL["n_clusters"]],
                                  similarities)
    assert fitted_statistics(legacy)["cluster_kernel"] == "gaussian"


def test_unknown_kernel_is_refused(train):
    with pytest.raises(ValueError, match="kernel must be one of"):
        fit_transformer(train, **SMALL, kernel="cosine")


def test_missing_values_and_unknown_categories(fitted, test_rows):
    rows = test_rows.head(3).copy()
    rows.loc[0, "total_bedrooms"] = np.nan
    rows.loc[1, "ocean_proximity"] = "ON THE MOON"
    out = transform(fitted, rows)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    names = feature_names(fitted)
    onehot = out[:, [names.index(f"ocean_proximity_{c}") for c in OCEAN_PROXIMITY_CATEGORIES]]
    assert onehot[1].sum() == 0 and onehot[0].sum() == 1 and onehot[2].sum() == 1


def test_fitted_statistics_are_json(fitted):
    stats = json.loads(json.dumps(fitted_statistics(fitted)))
    assert set(stats["imputer_medians"]) == set(NUMERIC_FEATURE_COLUMNS)
    assert list(stats["scaler_means"]) == list(ENGINEERED_COLUMNS)
    assert len(stats["cluster_centers_lat_lon"]) == SMALL["n_clusters"]
    assert stats["cluster_kernel"] == "biweight"
    assert stats["ocean_proximity_categories"] == list(OCEAN_PROXIMITY_CATEGORIES)
    assert len(stats["output_features"]) == len(feature_names(fitted))


def test_unfitted_transformer_has_no_statistics():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        fitted_statistics(build_transformer(**SMALL))


def test_skops_round_trip_gives_identical_output(fitted, test_rows, tmp_path):
    path = save_transformer(fitted, tmp_path / "nested" / "transformer.skops")
    loaded = load_transformer(path)
    np.testing.assert_array_equal(transform(loaded, test_rows), transform(fitted, test_rows))
    assert feature_names(loaded) == feature_names(fitted)
    assert fitted_statistics(loaded) == fitted_statistics(fitted)


def test_loading_uses_exactly_the_explicit_trusted_list(fitted, tmp_path, monkeypatch):
    path = save_transformer(fitted, tmp_path / "transformer.skops")
    # The file needs exactly the listed types beyond skops' defaults: no more, no less.
    assert set(sio.get_untrusted_types(file=path)) == set(TRUSTED_TYPES)

    seen = {}
    real_load = sio.load

    def spy(file, trusted=None):
        seen["trusted"] = trusted
        return real_load(file, trusted=trusted)

    monkeypatch.setattr(sio, "load", spy)
    load_transformer(path)
    assert seen["trusted"] == list(TRUSTED_TYPES) and seen["trusted"] is not True


def test_loading_refuses_types_outside_the_list(fitted, tmp_path, monkeypatch):
    path = save_transformer(fitted, tmp_path / "transformer.skops")
    monkeypatch.setattr(features, "TRUSTED_TYPES", [t for t in TRUSTED_TYPES if "ClusterSimilarity" not in t])
    with pytest.raises(sio.exceptions.UntrustedTypesFoundException, match="ClusterSimilarity"):
        load_transformer(path)
