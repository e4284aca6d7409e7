"""The promotion gate's rules, on hand-made evaluation reports."""

from __future__ import annotations

import copy

import pytest

from housing_platform.core.model_gate import (
    CHAMPION_CHECK,
    LINEAR_BASELINE_CHECK,
    RMSE_CHECK,
    SLICE_CHECK,
    GateThresholds,
    evaluate_model_gate,
)

REPORT = {
    "metrics": {"rmse": 48_000.0, "mae": 31_000.0, "r2": 0.83, "mape": 0.17},
    "baselines": {"linear_regression": {"rmse": 60_000.0}},
    "champion": None,
    "slices": [
        {"slice_by": "all", "slice": "all", "count": 4_100, "rmse": 48_000.0},
        {"slice_by": "ocean_proximity", "slice": "INLAND", "count": 1_300, "rmse": 40_000.0},
        {"slice_by": "ocean_proximity", "slice": "ISLAND", "count": 1, "rmse": 200_000.0},
    ],
    "test_rows": 4_100,
    "candidate_model_sha256": "candidate",
    "gate_thresholds": GateThresholds().model_dump(),
}


def report(**changes) -> dict:
    value = copy.deepcopy(REPORT)
    value.update(changes)
    return value


def test_good_first_model_passes_and_champion_rule_is_skipped_with_reason() -> None:
    verdicts = evaluate_model_gate(report())
    assert all(v.passed for v in verdicts.values())
    assert verdicts[CHAMPION_CHECK].skipped and "no champion" in verdicts[CHAMPION_CHECK].description


def test_rmse_above_the_limit_fails() -> None:
    verdicts = evaluate_model_gate(report(metrics={**REPORT["metrics"], "rmse": 56_000.0}))
    assert not verdicts[RMSE_CHECK].passed
    assert evaluate_model_gate(report(), GateThresholds(max_rmse_dollars=1.0))[RMSE_CHECK].passed is False


def test_must_beat_linear_baseline_by_ten_percent() -> None:
    # 55,000 is only 8.3% below 60,000.
    verdicts = evaluate_model_gate(report(metrics={**REPORT["metrics"], "rmse": 55_000.0}))
    assert not verdicts[LINEAR_BASELINE_CHECK].passed
    assert evaluate_model_gate(report(metrics={**REPORT["metrics"], "rmse": 53_999.0}))[LINEAR_BASELINE_CHECK].passed


@pytest.mark.parametrize(("champion_rmse", "passes"), [(47_600.0, True), (47_500.0, False), (50_000.0, True)])
def test_no_regression_beyond_one_percent_of_the_champion(champion_rmse: float, passes: bool) -> None:
    champion = {"version": "3", "model_sha256": "older", "metrics": {"rmse": champion_rmse}}
    verdict = evaluate_model_gate(report(champion=champion))[CHAMPION_CHECK]
    assert verdict.passed is passes and not verdict.skipped
    assert "v3" in verdict.description


def test_comparing_the_candidate_with_itself_fails_loudly() -> None:
    champion = {"version": "3", "model_sha256": "candidate", "metrics": {"rmse": 48_000.0}}
    verdict = evaluate_model_gate(report(champion=champion))[CHAMPION_CHECK]
    assert not verdict.passed and "candidate itself" in verdict.description


def test_weak_large_slice_fails_but_tiny_slices_are_not_gated() -> None:
    assert evaluate_model_gate(report())[SLICE_CHECK].passed  # ISLAND: 1 row, ignored
    slices = [*REPORT["slices"], {"slice_by": "median_income_quintile", "slice": "Q1", "count": 800, "rmse": 80_000.0}]
    verdict = evaluate_model_gate(report(slices=slices))[SLICE_CHECK]
    assert not verdict.passed and "median_income_quintile=Q1" in verdict.description


def test_thresholds_are_read_from_the_report_when_not_given() -> None:
    strict = report(gate_thresholds={**REPORT["gate_thresholds"], "max_rmse_dollars": 40_000.0})
    assert not evaluate_model_gate(strict)[RMSE_CHECK].passed
