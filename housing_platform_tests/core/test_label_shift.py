"""Label shift between the champion's training span and a candidate's, on real and hand-made spans."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from housing_platform.config.settings import DEFAULT_DATA_PATH
from housing_platform.core.label_shift import (
    OVERALL,
    compare_label_statistics,
    label_statistics,
    parse_statistics,
)
from housing_platform.core.model_gate import GateThresholds
from housing_platform.core.schema import MAX_HOUSE_VALUE, TARGET_COLUMN
from housing_platform.core.splits import split_frame
from housing_platform.core.validation import read_housing_csv, validate_housing_frame
from housing_platform.devtools.scenarios import make_scenario

LIMITS = GateThresholds()


def compare(before: pd.DataFrame, after: pd.DataFrame):
    return compare_label_statistics(label_statistics(before), label_statistics(after),
                                    LIMITS.max_label_median_shift, LIMITS.min_label_shift_rows)


@pytest.fixture(scope="module")
def base() -> pd.DataFrame:
    return validate_housing_frame(read_housing_csv(DEFAULT_DATA_PATH)).valid


def scaled(frame: pd.DataFrame, factor: float) -> pd.DataFrame:
    """Every label × factor, clipped to the schema's maximum: every row stays valid."""
    return frame.assign(**{TARGET_COLUMN: (frame[TARGET_COLUMN] * factor).clip(upper=MAX_HOUSE_VALUE)})


def test_statistics_are_small_json_with_rows_and_medians_per_category(base) -> None:
    stats = label_statistics(base)
    assert stats[OVERALL]["rows"] == len(base)
    assert stats["by_category"]["INLAND"]["median"] == float(base.loc[base.ocean_proximity == "INLAND", TARGET_COLUMN].median())
    text = json.dumps(stats)
    assert len(text) < 1_000  # fits a model-version tag (MLflow's limit: 5,000 characters)
    assert parse_statistics(text) == stats
    assert parse_statistics(None) is None and parse_statistics("not json") is None and parse_statistics("[]") is None


def test_prices_times_1_25_clipped_to_the_maximum_are_a_label_shift_naming_each_category(base) -> None:
    verdict = compare(base, scaled(base, 1.25))
    assert verdict.shifted and verdict.assessed
    named = {m.category for m in verdict.exceeding}
    assert named == {OVERALL, "<1H OCEAN", "INLAND", "NEAR BAY", "NEAR OCEAN"}  # ISLAND: 5 rows, not compared
    inland = next(m for m in verdict.moves if m.category == "INLAND")
    assert inland.change == pytest.approx(0.25)
    assert "INLAND: median $108,500 → $135,625 (+25.0%" in verdict.reason
    assert not next(m for m in verdict.moves if m.category == "ISLAND").compared


def test_the_honest_demo_traffic_is_not_a_label_shift(base) -> None:
    """The demo's loop learns from 1,000 stable and 1,500 income-shifted labelled districts (the held-out
    test split's true values): the medians move by well under the limit (measured: at most 0.6%)."""
    held_out = split_frame(base).test
    traffic = pd.concat([make_scenario(held_out, "stable", 1_000, 1), make_scenario(held_out, "income_shift", 1_500, 2)])
    verdict = compare(base, pd.concat([base, traffic], ignore_index=True))
    assert verdict.assessed and not verdict.shifted, verdict.reason
    assert max(abs(m.change) for m in verdict.moves if m.compared) < 0.01
    assert verdict.reason.startswith(f"no label shift: every median price within {LIMITS.max_label_median_shift:.0%}")


def test_a_poisoning_burst_on_one_category_is_a_label_shift(base) -> None:
    """1,500 INLAND districts labelled at 1.5× their value (the issue's poisoning run) move INLAND's median by 7%."""
    held_out = split_frame(base).test
    inland = held_out[held_out.ocean_proximity == "INLAND"].sample(1_500, replace=True, random_state=0)
    verdict = compare(base, pd.concat([base, scaled(inland, 1.5)], ignore_index=True))
    assert verdict.shifted and [m.category for m in verdict.exceeding] == ["INLAND"]


def test_the_limit_is_exclusive_and_small_categories_are_ignored() -> None:
    rng = np.random.default_rng(0)
    before = pd.DataFrame({"ocean_proximity": ["INLAND"] * 600 + ["ISLAND"] * 10,
                           TARGET_COLUMN: np.r_[rng.uniform(50_000, 150_000, 600), np.full(10, 400_000.0)]})
    def moved(change: float) -> pd.DataFrame:
        return before.assign(**{TARGET_COLUMN: before[TARGET_COLUMN] * (1 + change)})

    assert not compare(before, moved(LIMITS.max_label_median_shift - 1e-9)).shifted  # at the limit (within rounding)
    assert compare(before, moved(LIMITS.max_label_median_shift + 1e-3)).shifted
    assert compare(before, moved(-LIMITS.max_label_median_shift - 1e-3)).shifted  # a fall counts as much as a rise
    island_only = before.copy()
    island_only.loc[island_only.ocean_proximity == "ISLAND", TARGET_COLUMN] = 100_000.0
    assert not compare(before, island_only).shifted  # 10 rows < min_label_shift_rows
    assert compare_label_statistics(label_statistics(before), label_statistics(island_only), 0.05, 10).shifted


def test_without_champion_statistics_nothing_is_assessed(base) -> None:
    verdict = compare_label_statistics(None, label_statistics(base), 0.05, 500)
    assert not verdict.shifted and not verdict.assessed and "not assessed" in verdict.reason
