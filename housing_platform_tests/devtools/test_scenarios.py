"""Scenarios draw shifted traffic from held-out districts, stay schema-valid and never touch their input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from housing_platform.core.schema import (
    FEATURE_COLUMNS,
    MAX_HOUSE_VALUE,
    MAX_MEDIAN_INCOME,
    OCEAN_PROXIMITY_CATEGORIES,
    TARGET_COLUMN,
    HousingDistricts,
)
from housing_platform.devtools.scenarios import (
    COASTAL_CATEGORIES,
    MAX_SHIFTED_INCOME,
    SCENARIOS,
    make_scenario,
)


@pytest.fixture
def base() -> pd.DataFrame:
    """Forty valid districts, eight per ocean-proximity class, with an id to trace rows and an extra column."""
    rng = np.random.default_rng(3)
    rows = 40
    households = rng.integers(100, 1_000, rows).astype(float)
    rooms = households * rng.uniform(3, 6, rows)
    return pd.DataFrame(
        {
            "district_id": np.arange(rows),
            "longitude": rng.uniform(-123.0, -115.0, rows),
            "latitude": rng.uniform(33.0, 41.0, rows),
            "housing_median_age": rng.integers(1, 53, rows).astype(float),
            "total_rooms": rooms.round(),
            "total_bedrooms": (rooms * 0.2).round(),
            "population": (households * 3).round(),
            "households": households,
            # Incomes spread up to the survey cap, so a 1.5x shift must be clipped for some rows.
            "median_income": np.linspace(0.5, 15.0001, rows),
            "ocean_proximity": np.tile(OCEAN_PROXIMITY_CATEGORIES, rows // len(OCEAN_PROXIMITY_CATEGORIES)),
            TARGET_COLUMN: np.linspace(15_000.0, MAX_HOUSE_VALUE, rows),
            "prediction": np.linspace(20_000.0, 450_000.0, rows),
        }
    )


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("rows", [0, 25, 500])
def test_every_scenario_yields_schema_valid_rows_of_the_requested_count(base, scenario, rows) -> None:
    out = make_scenario(base, scenario, rows, seed=0)
    assert len(out) == rows
    assert list(out.columns) == list(base.columns)  # extra columns (id, prediction) are kept
    assert out.index.equals(pd.RangeIndex(rows))
    HousingDistricts.validate(out, lazy=True)  # raises on any broken rule


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenarios_are_reproducible_and_leave_the_base_untouched(base, scenario) -> None:
    before = base.copy(deep=True)
    first = make_scenario(base, scenario, 30, seed=11)
    pd.testing.assert_frame_equal(first, make_scenario(base, scenario, 30, seed=11))
    assert not first["district_id"].equals(make_scenario(base, scenario, 30, seed=12)["district_id"])
    pd.testing.assert_frame_equal(base, before)


def test_stable_draws_distinct_base_rows_unchanged_when_enough_exist(base) -> None:
    out = make_scenario(base, "stable", 40, seed=1)
    assert sorted(out["district_id"]) == list(range(40))  # a permutation: no repeats, nothing lost
    merged = out.merge(base, on="district_id", suffixes=("", "_base"))
    for column in (*FEATURE_COLUMNS, TARGET_COLUMN):
        assert merged[column].equals(merged[f"{column}_base"])


def test_stable_resamples_with_replacement_beyond_the_base_size(base) -> None:
    out = make_scenario(base, "stable", 1_000, seed=1)
    assert out["district_id"].nunique() == len(base)


def test_income_shift_scales_income_by_one_and_a_half_below_the_schema_maximum(base) -> None:
    out = make_scenario(base, "income_shift", 200, seed=2)
    original = base.set_index("district_id").loc[out["district_id"], "median_income"].to_numpy()
    expected = np.minimum(original * 1.5, MAX_SHIFTED_INCOME)
    np.testing.assert_allclose(out["median_income"], expected)
    assert (out["median_income"] == MAX_SHIFTED_INCOME).any()  # some rows were clipped
    assert out["median_income"].max() < MAX_MEDIAN_INCOME
    unchanged = [c for c in base.columns if c != "median_income"]
    expected_rest = base.set_index("district_id").loc[out["district_id"]].reset_index()[unchanged]
    pd.testing.assert_frame_equal(out[unchanged], expected_rest)


def test_income_shift_factor_can_be_overridden(base) -> None:
    out = make_scenario(base, "income_shift", 10, seed=2, factor=1.1)
    original = base.set_index("district_id").loc[out["district_id"], "median_income"].to_numpy()
    np.testing.assert_allclose(out["median_income"], np.minimum(original * 1.1, MAX_SHIFTED_INCOME))


def test_price_inflation_raises_only_the_target_clipped_at_the_survey_cap(base) -> None:
    out = make_scenario(base, "price_inflation", 200, seed=4)
    source = base.set_index("district_id").loc[out["district_id"]].reset_index()
    np.testing.assert_allclose(out[TARGET_COLUMN], np.minimum(source[TARGET_COLUMN] * 1.3, MAX_HOUSE_VALUE))
    assert out[TARGET_COLUMN].max() == MAX_HOUSE_VALUE
    features_and_prediction = [c for c in base.columns if c != TARGET_COLUMN]
    pd.testing.assert_frame_equal(out[features_and_prediction], source[features_and_prediction])


def test_coastal_only_draws_only_coastal_districts(base) -> None:
    out = make_scenario(base, "coastal_only", 300, seed=5)
    assert set(out["ocean_proximity"]) == set(COASTAL_CATEGORIES)
    assert "INLAND" not in set(out["ocean_proximity"])


def test_bad_requests_are_refused_with_the_reason(base) -> None:
    with pytest.raises(ValueError, match="scenario must be one of"):
        make_scenario(base, "heatwave", 10, seed=0)
    with pytest.raises(ValueError, match="non-negative integer"):
        make_scenario(base, "stable", -1, seed=0)
    with pytest.raises(ValueError, match="factor applies to"):
        make_scenario(base, "stable", 10, seed=0, factor=2.0)
    with pytest.raises(ValueError, match="no coastal districts"):
        make_scenario(base[base["ocean_proximity"] == "INLAND"], "coastal_only", 10, seed=0)
    with pytest.raises(ValueError, match=TARGET_COLUMN):
        make_scenario(base.drop(columns=TARGET_COLUMN), "price_inflation", 10, seed=0)
