"""The label gate's statistics on synthetic residuals: honest labels pass, shifted labels are held.

The synthetic world: a district's log price is its slice's level plus noise (sd 0.5, about the real
data's within-slice spread) and the champion's log prediction misses it by noise of sd 0.3 (the tiny
test model's residual sd on the real test split is 0.33). Thresholds are the defaults of
`LabelGateLimits`; the figures measured on the real data and a real model are in the README.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from housing_platform.core.label_consistency import (
    DAY_COLUMN,
    PREDICTION_COLUMN,
    SOURCE_COLUMN,
    LabelGateLimits,
    judge_consistency,
    log_ratio,
    volume_holds,
)
from housing_platform.core.schema import CATEGORICAL_COLUMN, TARGET_COLUMN

SLICE_LEVELS = {"<1H OCEAN": np.log(240_000), "INLAND": np.log(110_000), "NEAR OCEAN": np.log(250_000),
                "NEAR BAY": np.log(260_000)}
SLICE_SHARES = [0.44, 0.32, 0.13, 0.11]


def districts(rows: int, seed: int, *, slices=None, source: str = "client-a") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    names = list(SLICE_LEVELS)
    chosen = rng.choice(names, size=rows, p=SLICE_SHARES) if slices is None else np.asarray(slices)
    log_label = np.array([SLICE_LEVELS[c] for c in chosen]) + rng.normal(0, 0.5, rows)
    label = np.clip(np.exp(log_label), 15_000, 500_001)
    prediction = label * np.exp(rng.normal(0, 0.3, rows))
    return pd.DataFrame({CATEGORICAL_COLUMN: chosen, TARGET_COLUMN: label, PREDICTION_COLUMN: prediction,
                         SOURCE_COLUMN: source})


TRUSTED = districts(4_000, seed=0)


def test_honest_labels_pass_at_the_stated_false_alarm_rate() -> None:
    # 50 honest batches: the bound is significance = 0.1% per run, so an alarm here has p < 5% of being
    # chance (1,500 real-data batches measured 0 alarms: README, "The label gate").
    alarms = sum(judge_consistency(districts(1_000, seed=s), TRUSTED).held.any() for s in range(1, 51))
    assert alarms == 0


def test_covariate_shift_with_honest_labels_passes() -> None:
    # income_shift: the features move, the champion predicts 1.35x more, the labels stay true.
    new = districts(1_500, seed=7)
    new[PREDICTION_COLUMN] *= 1.35
    result = judge_consistency(new, TRUSTED)
    overall = result.groups.set_index("level").loc["overall"]
    assert overall["median_ratio_vs_trusted"] < 0.85 and overall["residual_p_value"] < 1e-20  # residuals moved
    assert not result.held.any(), result.description


def test_poisoned_inland_burst_from_one_source_is_held_with_its_reason() -> None:
    honest = districts(1_000, seed=8, source="client-a")
    poisoned = districts(1_500, seed=9, slices=["INLAND"] * 1_500, source="client-x")
    poisoned[TARGET_COLUMN] *= 1.5  # labelled at 1.5x their true value; the champion predicts the truth
    result = judge_consistency(pd.concat([honest, poisoned], ignore_index=True), TRUSTED)
    held = result.held
    assert held.iloc[1_000:].all() and not held.iloc[:1_000].any()  # the honest client's INLAND rows too
    assert "source client-x, ocean_proximity=INLAND: 1,500 labels" in result.reasons.iloc[-1]
    ratio = result.groups.query("level == 'source × slice' and source == 'client-x'")["median_ratio_vs_trusted"]
    assert ratio.iloc[0] == pytest.approx(1.5, rel=0.05)


def test_deflated_labels_are_held_too() -> None:
    new = districts(1_000, seed=10)
    new[TARGET_COLUMN] /= 1.5
    assert judge_consistency(new, TRUSTED).held.all()


def test_small_groups_are_reported_not_judged() -> None:
    new = districts(30, seed=11)
    new[TARGET_COLUMN] *= 3
    result = judge_consistency(new, TRUSTED)
    assert not result.judged and not result.held.any() and "not judged" in result.description


def test_log_ratio_is_finite_for_non_positive_predictions() -> None:
    assert np.isfinite(log_ratio([100_000.0, 1e300], [-5.0, 0.0])).all()


def test_volume_holds_a_source_day_beyond_the_limit() -> None:
    new = pd.DataFrame({SOURCE_COLUMN: ["a"] * 6 + ["b"] * 2, DAY_COLUMN: ["2026-11-30"] * 8})
    reasons = volume_holds(new, LabelGateLimits(max_labels_per_source_per_day=5))
    assert (reasons != "").tolist() == [True] * 6 + [False] * 2
    assert reasons.iloc[0] == "source a sent 6 labels on 2026-11-30 (limit 5 per day)"
