"""The promotion gate's rules, on hand-made evaluation reports."""

from __future__ import annotations

import copy

import pytest

from housing_platform.core.model_gate import (
    BASELINE_CHECK,
    CHAMPION_CHECK,
    GATE_CHECKS,
    GOLDEN_CHECK,
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
    "golden_holdout": {"rows": 4_000, "content_sha256": "pinned", "metrics": {"rmse": 44_000.0}, "champion_metrics": None},
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


def test_must_beat_linear_baseline_by_the_default_five_percent() -> None:
    # 57,500 is only 4.2% below 60,000.
    verdicts = evaluate_model_gate(report(metrics={**REPORT["metrics"], "rmse": 57_500.0}))
    assert not verdicts[BASELINE_CHECK].passed
    assert evaluate_model_gate(report(metrics={**REPORT["metrics"], "rmse": 56_999.0}))[BASELINE_CHECK].passed


def test_beats_baseline_holds_the_candidate_against_the_configured_textbook_baseline() -> None:
    baselines = {"linear_regression": {"rmse": 60_000.0}, "textbook_random_forest": {"rmse": 47_000.0}}
    textbook = GateThresholds(baseline_to_beat="textbook_random_forest", min_improvement_over_baseline=0.0)
    verdict = evaluate_model_gate(report(baselines=baselines), textbook)[BASELINE_CHECK]
    assert not verdict.passed  # $48,000 is above the textbook's $47,000
    assert "textbook random forest" in verdict.description and verdict.details["baseline_rmse"] == 47_000.0
    better = report(baselines=baselines, metrics={**REPORT["metrics"], "rmse": 46_999.0})
    assert evaluate_model_gate(better, textbook)[BASELINE_CHECK].passed
    # A negative margin tolerates a candidate up to that fraction worse than the baseline.
    lenient = GateThresholds(baseline_to_beat="textbook_random_forest", min_improvement_over_baseline=-0.05)
    assert evaluate_model_gate(report(baselines=baselines), lenient)[BASELINE_CHECK].passed


def test_a_report_without_the_configured_baseline_fails_naming_it() -> None:
    textbook = GateThresholds(baseline_to_beat="textbook_random_forest")
    verdict = evaluate_model_gate(report(), textbook)[BASELINE_CHECK]
    assert not verdict.passed and "no textbook_random_forest baseline" in verdict.description


def test_reports_recorded_before_the_baseline_was_configurable_are_re_read_against_linear() -> None:
    legacy = {k: v for k, v in REPORT["gate_thresholds"].items()
              if k not in ("baseline_to_beat", "min_improvement_over_baseline")}
    verdict = evaluate_model_gate(report(gate_thresholds={**legacy, "min_improvement_over_linear": 0.25}))[BASELINE_CHECK]
    assert not verdict.passed and verdict.details["required_rmse"] == 45_000.0  # 60,000 x (1 - 0.25)


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


# -- the golden holdout: a yardstick the new data cannot move -------------------------------------------

MARGIN = GateThresholds().max_golden_regression_vs_champion
CHAMPION = {"version": "3", "model_sha256": "older", "metrics": {"rmse": 48_000.0}}  # equal on the test split


def golden(candidate_rmse: float, champion_rmse: float | None = 44_000.0) -> dict:
    return {"rows": 4_000, "content_sha256": "pinned", "metrics": {"rmse": candidate_rmse},
            "champion_metrics": {"rmse": champion_rmse} if champion_rmse is not None else None}


def test_golden_holdout_blocks_a_candidate_equal_on_the_test_split_but_worse_on_the_pinned_rows() -> None:
    worse = 44_000.0 * (1 + MARGIN) + 100  # $100 beyond the allowed margin
    verdicts = evaluate_model_gate(report(champion=CHAMPION, golden_holdout=golden(worse)))
    assert verdicts[CHAMPION_CHECK].passed  # the test split cannot tell them apart
    verdict = verdicts[GOLDEN_CHECK]
    assert not verdict.passed and not verdict.needs_review and not verdict.skipped
    allowed = 44_000.0 * (1 + MARGIN)
    assert (f"golden holdout RMSE ${worse:,.0f} vs champion v3 $44,000 on the 4,000 pinned golden rows "
            f"(+{worse / 44_000 - 1:.1%}; allowed ${allowed:,.0f}, +{MARGIN:.0%}); test split RMSE $48,000 vs $48,000"
            ) == verdict.description
    assert verdict.details["golden_rmse"] == worse and verdict.details["champion_golden_rmse"] == 44_000.0


def test_golden_holdout_passes_within_the_margin_and_the_margin_is_configurable() -> None:
    at_limit = report(champion=CHAMPION, golden_holdout=golden(44_000.0 * (1 + MARGIN)))
    assert evaluate_model_gate(at_limit)[GOLDEN_CHECK].passed
    assert not evaluate_model_gate(at_limit, GateThresholds(max_golden_regression_vs_champion=MARGIN / 2))[GOLDEN_CHECK].passed


def test_golden_holdout_is_skipped_without_a_champion_and_required_with_one() -> None:
    first = evaluate_model_gate(report())[GOLDEN_CHECK]
    assert first.passed and first.skipped and "$44,000 on the 4,000 pinned golden rows" in first.description
    unscored = evaluate_model_gate(report(champion=CHAMPION, golden_holdout=golden(44_000.0, None)))[GOLDEN_CHECK]
    assert not unscored.passed and "not scored on the golden holdout" in unscored.description
    missing = evaluate_model_gate(report(champion=CHAMPION, golden_holdout=None))[GOLDEN_CHECK]
    assert not missing.passed and "no golden holdout" in missing.description


def test_worse_on_the_golden_holdout_after_a_label_shift_is_held_for_a_person_not_blocked() -> None:
    shift = {"shifted": True, "reason": "label shift: INLAND: median $108,400 → $135,500 (+25.0%, ...)"}
    verdict = evaluate_model_gate(report(champion=CHAMPION, golden_holdout=golden(70_000.0), label_shift=shift))[GOLDEN_CHECK]
    assert not verdict.passed and verdict.needs_review
    assert "held for a person, not blocked: label shift: INLAND" in verdict.description
    quiet = {"shifted": False, "reason": "no label shift"}
    verdict = evaluate_model_gate(report(champion=CHAMPION, golden_holdout=golden(70_000.0), label_shift=quiet))[GOLDEN_CHECK]
    assert not verdict.passed and not verdict.needs_review


def test_every_gate_rule_is_listed() -> None:
    assert set(evaluate_model_gate(report())) == set(GATE_CHECKS)
