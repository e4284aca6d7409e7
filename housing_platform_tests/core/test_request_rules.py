"""The schema's row rules, vectorised: they reject exactly what pandera rejects, row for row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from housing_platform.core import request_rules
from housing_platform.core.request_rules import check_rules, rejected_rules_per_row
from housing_platform.core.schema import CATEGORICAL_COLUMN, NUMERIC_FEATURE_COLUMNS


@pytest.fixture(scope="module")
def real_test_split() -> pd.DataFrame:
    """The real data's test split (validated, as training sees it)."""
    from housing_platform.devtools.tiny_models import real_splits

    return real_splits().test


def test_cross_column_rules_are_read_from_the_pandera_model():
    assert request_rules.CROSS_RULES == (("total_bedrooms", "<=", "total_rooms"), ("households", "<=", "population"))


def _rule_breakers(base: pd.DataFrame) -> pd.DataFrame:
    """30 valid rows, then one row per rule of the schema, each breaking exactly that rule."""
    row = base.iloc[0]

    def broken(**changes) -> pd.Series:
        copy = row.copy()
        for key, value in changes.items():
            copy[key] = value
        return copy

    rows = []
    for name in NUMERIC_FEATURE_COLUMNS:
        rule = request_rules.COLUMN_RULES[name]
        if rule.minimum is not None:
            rows.append(broken(**{name: rule.minimum if not rule.minimum_inclusive else rule.minimum - 1}))
        if rule.maximum is not None:
            rows.append(broken(**{name: rule.maximum if not rule.maximum_inclusive else rule.maximum + 1}))
        if not rule.nullable:
            rows.append(broken(**{name: np.nan}))
    rows.append(broken(**{CATEGORICAL_COLUMN: "MARS"}))
    rows.append(broken(total_bedrooms=row["total_rooms"] + 1))
    rows.append(broken(households=row["population"] + 1))
    return pd.concat([base.head(30), pd.DataFrame(rows)], ignore_index=True)


def test_check_rules_rejects_exactly_the_rows_pandera_quarantines(real_test_split):
    from housing_platform.core.validation import validate_housing_frame

    frame = _rule_breakers(real_test_split)
    outcome = validate_housing_frame(frame)
    numeric = frame[list(NUMERIC_FEATURE_COLUMNS)].to_numpy(dtype=np.float64)

    violations = check_rules(numeric, frame[CATEGORICAL_COLUMN].to_numpy(dtype=object))

    rejected = sorted({int(i) for v in violations for i in v.rows})
    assert rejected == list(range(30, len(frame)))  # every breaker, no valid row
    assert len(outcome.quarantine) == len(rejected)  # the training validator agrees row for row
    assert {v.rule for v in violations} >= {"> 0", "not null", "one of ['<1H OCEAN', 'INLAND', 'NEAR OCEAN', 'NEAR BAY', "
                                            "'ISLAND']", "total_bedrooms <= total_rooms", "households <= population"}


def test_values_on_and_next_to_every_bound_are_judged_like_pandera():
    """The one-pass pre-check (inclusive limits moved to the next float) decides exactly as the rules."""
    from housing_platform.core.schema import EXAMPLE_DISTRICT, HousingDistricts

    rows = []
    for name, rule in request_rules.COLUMN_RULES.items():
        if name == CATEGORICAL_COLUMN:
            continue
        for bound in (rule.minimum, rule.maximum):
            if bound is not None:
                for value in (np.nextafter(bound, -np.inf), bound, np.nextafter(bound, np.inf)):
                    rows.append({**EXAMPLE_DISTRICT, name: float(value)})
        rows += [{**EXAMPLE_DISTRICT, name: v} for v in (np.inf, -np.inf, np.nan)]
    frame = pd.DataFrame(rows)
    frame["median_house_value"] = 200_000.0
    # Keep the cross-column rules out of the way (they are not what this test is about): no bedroom
    # count beside a tiny room count, households no more than population.
    small_rooms = frame["total_rooms"] < frame["total_bedrooms"]
    frame.loc[small_rooms, "total_bedrooms"] = np.nan
    frame["households"] = frame["households"].where(frame["households"] <= frame["population"], frame["population"])
    numeric = frame[list(NUMERIC_FEATURE_COLUMNS)].to_numpy(dtype=np.float64)
    categories = frame[CATEGORICAL_COLUMN].to_numpy(dtype=object)

    # One row at a time, as the server sees single-row requests: the pre-check alone decides then.
    rejected = [i for i in range(len(frame)) if check_rules(numeric[i : i + 1], categories[i : i + 1])]
    expected = []
    for i, row in frame.iterrows():
        try:
            HousingDistricts.validate(pd.DataFrame([row]))
        except Exception:  # noqa: BLE001 - pandera raises SchemaError(s); any failure means "rejected"
            expected.append(i)
        else:
            if np.isinf(numeric[i]).any():  # +inf where pandera has no upper bound: refused as "finite"
                expected.append(i)
    assert rejected == expected
    assert len(rejected) > len(frame) / 3  # the test really exercises failures (inf, NaN, beyond bounds)


def test_missing_bedrooms_pass_the_rules_and_cross_rule():
    numeric = np.array([[-122.2, 37.9, 41.0, 880.0, np.nan, 322.0, 126.0, 8.3]])
    assert check_rules(numeric, ["NEAR BAY"]) == []


def test_rejected_rules_per_row_joins_each_row_s_rules():
    numeric = np.array([[-122.2, 37.9, 41.0, -5.0, 900.0, 322.0, 400.0, 8.3],
                        [-122.2, 37.9, 41.0, 880.0, 129.0, 322.0, 126.0, 8.3]])

    out = rejected_rules_per_row(check_rules(numeric, ["NEAR BAY", "NEAR BAY"]), len(numeric))

    assert out.dtype == object
    assert out[0] == "total_rooms > 0; total_bedrooms <= total_rooms; households <= population"
    assert out[1] == ""
