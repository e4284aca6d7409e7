"""Live-quality computations: the label join, per-version RMSE and the degradation verdict."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from housing_platform.core.live_quality import (
    labelled_training_rows,
    latency_percentiles,
    live_performance,
    out_of_range_share,
    quality_verdict,
)
from housing_platform.core.schema import FEATURE_COLUMNS, TARGET_COLUMN


def captured(districts: pd.DataFrame, version: str, error: float, labelled: int) -> pd.DataFrame:
    frame = districts[list(FEATURE_COLUMNS)].copy()
    frame["model_version"] = version
    frame["prediction"] = districts[TARGET_COLUMN] + error
    frame["latency_ms"] = np.linspace(0.1, 2.0, len(frame))
    frame["out_of_range"] = ["median_income"] * 10 + [""] * (len(frame) - 10)
    truth = districts[TARGET_COLUMN].astype(float).copy()
    truth.iloc[labelled:] = np.nan  # feedback came back for the first `labelled` rows only
    frame[TARGET_COLUMN] = truth
    return frame


def test_live_performance_uses_only_labelled_rows_per_version(districts: pd.DataFrame) -> None:
    frame = pd.concat([captured(districts, "1", 10_000.0, 150), captured(districts, "2", -20_000.0, 50)])
    performance = live_performance(frame, {"1": 9_000.0, "2": 30_000.0}).set_index("model_version")
    assert performance.loc["1", "labelled_rows"] == 150 and performance.loc["1", "scored_rows"] == 200
    assert performance.loc["1", "rmse"] == pytest.approx(10_000.0)
    assert performance.loc["2", "mae"] == pytest.approx(20_000.0)
    assert performance.loc["1", "rmse_ratio"] == pytest.approx(10_000 / 9_000)


def test_degradation_beyond_tolerance_fails(districts: pd.DataFrame) -> None:
    performance = live_performance(captured(districts, "1", 12_000.0, 150), {"1": 10_000.0})
    verdict = quality_verdict(performance, tolerance=0.15, min_labelled=100)
    assert not verdict.passed and verdict.degraded_versions == ["1"]
    assert quality_verdict(performance, tolerance=0.25, min_labelled=100).passed


def test_too_few_labels_is_insufficient_data_and_passes(districts: pd.DataFrame) -> None:
    performance = live_performance(captured(districts, "1", 50_000.0, 20), {"1": 10_000.0})
    verdict = quality_verdict(performance, min_labelled=100)
    assert verdict.passed and verdict.description.startswith("insufficient data")


def test_labelled_training_rows_keep_features_and_truth(districts: pd.DataFrame) -> None:
    rows = labelled_training_rows(captured(districts, "1", 0.0, 30))
    assert list(rows.columns) == [*FEATURE_COLUMNS, TARGET_COLUMN] and len(rows) == 30


def test_latency_and_out_of_range_summaries(districts: pd.DataFrame) -> None:
    frame = captured(districts, "1", 0.0, 0)
    assert out_of_range_share(frame) == pytest.approx(10 / 200)
    percentiles = latency_percentiles(frame)
    assert percentiles["p50"] == pytest.approx(np.percentile(frame["latency_ms"], 50))
    assert np.isnan(latency_percentiles(frame.iloc[0:0])["p99"])


def honest_traffic(rows: int, rmse: float, seed: int) -> pd.DataFrame:
    """``rows`` labelled rows whose served predictions miss the truth by normal errors of sd ``rmse``."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(60_000, 450_000, rows)
    return pd.DataFrame({"model_version": "1", "prediction": truth + rng.normal(0, rmse, rows), TARGET_COLUMN: truth})


def test_one_absurd_label_among_a_thousand_honest_ones_does_not_fail_live_quality() -> None:
    # Before: one feedback of 1e300 made the live RMSE infinite and failed the check (issue 12).
    # Now the label counts as $500,001 and its residual as at most 4 x the evaluation RMSE: it adds at
    # most 4² / 1,000 = 1.6% to the squared error, +0.8% to the RMSE, against a 15% tolerance.
    frame = honest_traffic(1_000, 45_000.0, seed=0)
    frame.loc[0, TARGET_COLUMN] = 1e300
    performance = live_performance(frame, {"1": 45_000.0})
    row = performance.iloc[0]
    assert np.isfinite(row["rmse"]) and row["rmse_ratio"] < 1.05
    assert (row["labels_outside_schema"], row["residuals_clipped"]) == (1, 1)
    assert quality_verdict(performance).passed


def test_a_real_degradation_still_fails_after_clipping() -> None:
    # Errors 30% larger on every row: clipping at 4 sd of the evaluation error touches ~0.01% of rows,
    # so the live RMSE stays ~1.3x the evaluation RMSE and fails the 15% tolerance.
    performance = live_performance(honest_traffic(1_000, 45_000.0 * 1.3, seed=1), {"1": 45_000.0})
    assert performance.iloc[0]["rmse_ratio"] > 1.25
    assert not quality_verdict(performance).passed


def test_honest_traffic_passes_at_its_evaluation_rmse() -> None:
    ratios = [live_performance(honest_traffic(1_000, 45_000.0, seed=s), {"1": 45_000.0}).iloc[0]["rmse_ratio"]
              for s in range(20)]
    # sd of the RMSE ratio at n=1,000 is about 1/sqrt(2n) = 2.2%: 15% is ~7 sd away.
    assert max(ratios) < 1.07 and min(ratios) > 0.93


def test_without_an_evaluation_rmse_the_clip_bound_is_robust_to_the_absurd_label() -> None:
    frame = honest_traffic(1_000, 45_000.0, seed=2)
    frame.loc[0, TARGET_COLUMN] = 1e300
    assert live_performance(frame, {}).iloc[0]["rmse"] < 50_000


# -- prediction-interval coverage on labelled traffic: a concept-drift signal ---------------------------

def _calibration(quantile: float) -> dict:
    from housing_platform.core.conformal import IntervalConfig

    config = IntervalConfig()
    return {"level": config.level, "quantile": quantile, "difficulty_floor_dollars": config.difficulty_floor_dollars,
            "difficulty_exponent": config.difficulty_exponent, "calibration_rows": 1_000}


def _traffic_with_intervals(rows: int, noise_scale: float, seed: int) -> tuple[pd.DataFrame, dict]:
    """Labelled traffic whose residuals are N(0, (s * sqrt(prediction))^2); the calibration that covers 80% at s=1."""
    rng = np.random.default_rng(seed)
    prediction = rng.uniform(60_000, 450_000, rows)
    frame = pd.DataFrame({"model_version": "1", "prediction": prediction,
                          TARGET_COLUMN: prediction + rng.normal(0, 1, rows) * noise_scale * 60.0 * np.sqrt(prediction)})
    return frame, _calibration(1.2816 * 60.0)  # the normal's 90% quantile: |z| <= 1.2816 for 80% of rows


def test_interval_coverage_is_tracked_per_version_and_passes_when_calibrated() -> None:
    frame, calibration = _traffic_with_intervals(2_000, 1.0, seed=0)
    performance = live_performance(frame, {"1": 45_000.0}, calibrations={"1": calibration})
    row = performance.iloc[0]
    # 2,000 rows of an exactly calibrated 80% interval: sd sqrt(0.16 / 2,000) = 0.9%; 4 sd = 3.6%.
    assert row["interval_level"] == 0.8 and abs(row["interval_coverage"] - 0.8) <= 0.036
    verdict = quality_verdict(performance, tolerance=10.0)  # the RMSE rule out of the way
    assert verdict.passed and "interval coverage" in verdict.description


def test_coverage_falling_out_of_the_band_fails_even_when_the_rmse_rule_passes() -> None:
    # Residuals twice as large: the 80% interval now covers P(|z| <= 0.64) = 48% of labels.
    frame, calibration = _traffic_with_intervals(2_000, 2.0, seed=1)
    performance = live_performance(frame, {"1": 1e9}, calibrations={"1": calibration})
    verdict = quality_verdict(performance, tolerance=10.0)
    assert not verdict.passed and verdict.degraded_versions == ["1"]
    assert "vs 80% calibrated (allowed ±10%)" in verdict.description
    # A version without a calibration is judged on its RMSE alone.
    assert quality_verdict(live_performance(frame, {"1": 1e9}), tolerance=10.0).passed
