"""Split-conformal prediction intervals: the quantile's rank, the coverage guarantee, the width's shape."""

from __future__ import annotations

import math

import numpy as np
import pytest

from housing_platform.core.conformal import IntervalConfig, calibrate, coverage, difficulty, intervals
from housing_platform.core.evaluation import interval_slices
from housing_platform.core.schema import MAX_HOUSE_VALUE
from housing_platform_tests.factories import make_districts


def test_the_quantile_is_the_ceil_n_plus_1_times_level_order_statistic():
    # Constant difficulty (exponent 0): scores are the absolute residuals 1..9.
    y = np.array([100.0 + r for r in range(1, 10)])
    config = IntervalConfig(level=0.8, difficulty_exponent=0.0)
    calibration = calibrate(y, np.full(9, 100.0), config)
    assert calibration.quantile == 8.0  # ceil(10 * 0.8) = 8th smallest of 1..9
    assert calibration.calibration_rows == 9
    lower, upper = intervals([200.0], calibration)
    assert (lower[0], upper[0]) == (192.0, 208.0)


def test_too_few_calibration_rows_for_the_level_are_refused():
    with pytest.raises(ValueError, match="cannot calibrate a 90% interval"):
        calibrate(np.ones(5), np.ones(5), IntervalConfig(level=0.9))


def test_coverage_on_exchangeable_rows_is_the_level():
    rng = np.random.default_rng(0)
    predictions = rng.uniform(30_000, 480_000, 22_000)
    y = predictions + rng.normal(0.0, 1.0, predictions.size) * 60.0 * np.sqrt(predictions)  # heteroscedastic
    calibration = calibrate(y[:2_000], predictions[:2_000])
    lower, upper = intervals(predictions[2_000:], calibration)
    covered = coverage(y[2_000:], lower, upper)["coverage"]
    # Split conformal: E[coverage] lies in [level, level + 1/(n+1)]; the test coverage of 20,000 rows
    # varies by sqrt(0.8 * 0.2 / 20,000) = 0.28% around it and the calibration's own sampling adds
    # sqrt(0.8 * 0.2 / 2,000) = 0.9%: 4 standard deviations of both is 3.8%.
    assert abs(covered - 0.8) <= 4 * math.hypot(0.0028, 0.009)


def test_ranges_widen_with_the_prediction_and_stay_inside_the_survey_range():
    calibration = calibrate(np.array([1.0, 2.0, 3.0, 4.0, 5.0] * 4) * 1e5, np.full(20, 3e5))
    lower, upper = intervals([20_000.0, 200_000.0, 450_000.0], calibration)
    widths = upper - lower
    assert widths[0] <= widths[1] <= widths[2] or upper[2] == MAX_HOUSE_VALUE
    assert (lower >= 0).all() and (upper <= MAX_HOUSE_VALUE).all()
    # Below the floor the width stops shrinking: $20k and $50k predictions get the same half-width.
    floor = IntervalConfig().difficulty_floor_dollars
    assert difficulty([20_000.0], floor, 0.5)[0] == difficulty([floor], floor, 0.5)[0] == math.sqrt(floor)


def test_coverage_is_reported_overall_and_per_slice():
    frame = make_districts(300)
    y = frame["median_house_value"].to_numpy()
    table = interval_slices(frame, y, y - 1.0, y + 1.0)
    assert table.iloc[0][["slice_by", "slice"]].tolist() == ["all", "all"]
    assert (table.loc[table["count"] > 0, "coverage"] == 1.0).all()
    assert table.iloc[0]["mean_width"] == 2.0 and table.iloc[0]["count"] == 300
    assert set(table["slice_by"]) == {"all", "ocean_proximity", "median_income_quintile"}
