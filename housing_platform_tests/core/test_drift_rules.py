"""The drift check's rules on hand-made drift tables: which rule fires, at which number, and what it says.

Pure and exact: the tables are written here, so no expectation depends on sampling or on a CPU's digits.
The same rules on real traffic (a scaled feature, stable days, a drifted prediction) are in test_drift.py.
"""

from __future__ import annotations

import pandas as pd
import pytest

from housing_platform.core.drift import DriftConfig
from housing_platform.core.drift_evidently import typed_table
from housing_platform.core.drift_rules import (
    RULE_DATASET_SHARE,
    RULE_KEY_FEATURE,
    RULE_PREDICTION,
    RULE_SEVERE_FEATURE,
    RULES,
    judge,
)
from housing_platform.core.schema import CATEGORICAL_COLUMN, FEATURE_COLUMNS

COMPARED = [*FEATURE_COLUMNS, "prediction"]


def drift_table(scores: dict[str, float] | None = None, thresholds: dict[str, float] | None = None,
                methods: dict[str, str] | None = None) -> pd.DataFrame:
    """A quiet table (every score 0.05, threshold 0.1) with the given columns changed; drifted = score >= threshold."""
    scores, thresholds, methods = scores or {}, thresholds or {}, methods or {}
    rows = []
    for column in COMPARED:
        method = methods.get(column, "jensenshannon" if column == CATEGORICAL_COLUMN else "wasserstein")
        score, threshold = scores.get(column, 0.05), thresholds.get(column, 0.1)
        drifted = score < threshold if method == "ks" else score >= threshold  # ks: a p-value
        rows.append({"column": column, "method": method, "score": score, "threshold": threshold, "drifted": drifted})
    return typed_table(rows)


def judged(table: pd.DataFrame, prediction_column: str | None = "prediction", **config):
    defaults = DriftConfig(**config)
    return judge(
        table,
        drift_share=defaults.drift_share,
        key_features=defaults.key_features,
        severe_drift_multiple=defaults.severe_drift_multiple,
        fail_on_prediction_drift=defaults.fail_on_prediction_drift,
        prediction_column=prediction_column,
    )


def test_a_quiet_table_fires_no_rule_and_says_so() -> None:
    judgement = judged(drift_table())
    assert judgement.check_passed and judgement.rules_fired == []
    assert judgement.reason == "no rule fired; 0 of 9 features drifted (0%)"
    assert judgement.prediction_drift is False


def test_one_drifted_feature_below_its_severe_threshold_is_reported_but_passes() -> None:
    judgement = judged(drift_table({"total_rooms": 0.29}))
    assert judgement.drifted_columns == ["total_rooms"]
    assert judgement.check_passed and judgement.severe_feature_drift == []
    assert judgement.reason == "no rule fired; 1 of 9 features drifted (11%): total_rooms"


def test_a_feature_at_its_severe_threshold_fails_the_check_naming_feature_score_and_threshold() -> None:
    judgement = judged(drift_table({"total_rooms": 0.3}))
    assert not judgement.check_passed
    assert judgement.rules_fired == [RULE_SEVERE_FEATURE]
    assert judgement.severe_feature_drift == ["total_rooms"]
    assert judgement.reason == (
        "severe_single_feature: total_rooms scored 0.300 ≥ its severe threshold 0.300 (3× its threshold 0.100); "
        "1 of 9 features drifted (11%): total_rooms"
    )


def test_the_severe_threshold_is_the_multiple_of_the_threshold_raised_to_the_noise_floor() -> None:
    # On a small day the noise floor raised population's threshold to 0.19: severe means 3 x 0.19, not 3 x 0.1.
    raised = {"population": 0.19}
    below = judged(drift_table({"population": 0.56}, raised))
    assert below.severe_thresholds["population"] == 0.57 and below.severe_thresholds["households"] == 0.3
    assert below.check_passed and below.drifted_columns == ["population"]
    at = judged(drift_table({"population": 0.57}, raised))
    assert at.severe_feature_drift == ["population"]
    assert "population scored 0.570 ≥ its severe threshold 0.570 (3× its threshold 0.190)" in at.reason


def test_the_multiple_is_configurable_and_none_switches_the_rule_off() -> None:
    table = drift_table({"population": 0.45})
    assert judged(table).severe_feature_drift == ["population"]
    assert judged(table, severe_drift_multiple=5.0).check_passed
    off = judged(table, severe_drift_multiple=None)
    assert off.check_passed and off.severe_thresholds == {} and off.drifted_columns == ["population"]


def test_the_category_is_judged_on_its_jensen_shannon_distance() -> None:
    judgement = judged(drift_table({CATEGORICAL_COLUMN: 0.38}))
    assert judgement.rules_fired == [RULE_SEVERE_FEATURE] and judgement.severe_feature_drift == [CATEGORICAL_COLUMN]


def test_a_p_value_test_is_not_judged_by_the_severe_rule() -> None:
    # A p-value of 0.001 against 0.05 is drift, but "3x the threshold" means nothing for a p-value.
    judgement = judged(drift_table({"population": 0.001}, {"population": 0.05}, {"population": "ks"}))
    assert judgement.drifted_columns == ["population"]
    assert "population" not in judgement.severe_thresholds
    assert judgement.check_passed


def test_prediction_drift_alone_fails_the_check_unless_switched_off() -> None:
    table = drift_table({"prediction": 0.2})
    judgement = judged(table)
    assert judgement.rules_fired == [RULE_PREDICTION] and judgement.drifted_columns == []
    assert judgement.reason == (
        "prediction_drift: prediction drifted (score 0.200, threshold 0.100); 0 of 9 features drifted (0%)"
    )
    assert judged(table, fail_on_prediction_drift=False).check_passed
    assert "prediction" not in judgement.severe_thresholds  # the prediction has its own rule


def test_without_a_prediction_column_the_prediction_rule_does_not_apply() -> None:
    table = drift_table().query("column != 'prediction'")
    judgement = judged(table, prediction_column=None)
    assert judgement.prediction_drift is None and judgement.check_passed


@pytest.mark.parametrize("share", [0.5, 0.6])
def test_dataset_share_fires_at_drift_share(share) -> None:
    five = dict.fromkeys(["longitude", "latitude", "housing_median_age", "total_rooms", "population"], 0.15)
    judgement = judged(drift_table(five), drift_share=share)
    assert judgement.drifted_share == pytest.approx(5 / 9)
    assert judgement.dataset_drift is (share == 0.5)
    if share == 0.5:
        assert judgement.rules_fired == [RULE_DATASET_SHARE]
        assert judgement.reason.startswith("dataset_share: 5 of 9 features drifted (56%) ≥ drift_share 50%: longitude")


def test_every_rule_that_fired_is_named_in_order_with_its_numbers() -> None:
    scores = dict.fromkeys(["longitude", "latitude", "housing_median_age", "total_rooms"], 0.15)
    scores |= {"median_income": 0.12, "population": 0.9, "prediction": 0.11}
    judgement = judged(drift_table(scores))
    assert judgement.rules_fired == list(RULES)
    assert judgement.key_feature_drift == ["median_income"] and judgement.severe_feature_drift == ["population"]
    for part in (
        "dataset_share: 6 of 9 features drifted (67%)",
        "key_feature: median_income drifted (score 0.120, threshold 0.100)",
        "severe_single_feature: population scored 0.900 ≥ its severe threshold 0.300",
        "prediction_drift: prediction drifted (score 0.110, threshold 0.100)",
    ):
        assert part in judgement.reason
    assert RULE_KEY_FEATURE in judgement.findings
