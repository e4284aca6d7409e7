"""Each schema rule has a passing case (the synthetic districts) and a failing case."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest

from housing_platform.core.schema import (
    ALL_COLUMNS,
    FEATURE_COLUMNS,
    TARGET_COLUMN,
    HousingDistricts,
    column_rules,
)


def test_valid_districts_pass_the_schema(districts: pd.DataFrame) -> None:
    validated = HousingDistricts.validate(districts, lazy=True)
    assert list(validated.columns) == list(ALL_COLUMNS)


@pytest.mark.parametrize(
    ("column", "bad_value", "rule"),
    [
        ("longitude", -130.0, "greater_than_or_equal_to(-124.5)"),
        ("longitude", -110.0, "less_than_or_equal_to(-114.0)"),
        ("latitude", 30.0, "greater_than_or_equal_to(32.5)"),
        ("latitude", 45.0, "less_than_or_equal_to(42.1)"),
        ("housing_median_age", 0.0, "greater_than(0)"),
        ("total_rooms", -5.0, "greater_than(0)"),
        ("total_bedrooms", 0.0, "greater_than(0)"),
        ("population", 0.0, "greater_than(0)"),
        ("households", -1.0, "greater_than(0)"),
        ("median_income", 0.0, "greater_than(0)"),
        ("median_income", 16.0, "less_than(16.0)"),
        ("median_house_value", 9_999.0, "greater_than_or_equal_to(10000.0)"),
        ("median_house_value", 500_002.0, "less_than_or_equal_to(500001.0)"),
        ("ocean_proximity", "ON THE MOON", "isin"),
        ("longitude", np.nan, "not_nullable"),
        ("ocean_proximity", None, "not_nullable"),
    ],
)
def test_each_column_rule_rejects_its_bad_value(districts, column, bad_value, rule) -> None:
    broken = districts.copy()
    broken[column] = broken[column].astype(object)
    broken.loc[7, column] = bad_value
    with pytest.raises(pa.errors.SchemaErrors) as raised:
        HousingDistricts.validate(broken, lazy=True)
    cases = raised.value.failure_cases
    hit = cases[(cases["column"] == column) & (cases["index"] == 7)]
    assert hit["check"].astype(str).str.startswith(rule).any(), cases.to_string()


def test_total_bedrooms_may_be_null(districts: pd.DataFrame) -> None:
    districts.loc[3, "total_bedrooms"] = np.nan
    HousingDistricts.validate(districts, lazy=True)


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        (lambda d: d.assign(total_bedrooms=d["total_rooms"] + 1), "total_bedrooms <= total_rooms"),
        (lambda d: d.assign(households=d["population"] + 1), "households <= population"),
    ],
)
def test_cross_column_rules(districts, change, rule) -> None:
    with pytest.raises(pa.errors.SchemaErrors) as raised:
        HousingDistricts.validate(change(districts), lazy=True)
    assert rule in set(raised.value.failure_cases["check"].astype(str))


def test_lazy_validation_collects_every_failure(districts: pd.DataFrame) -> None:
    districts.loc[1, "median_income"] = 99.0
    districts.loc[2, "ocean_proximity"] = "NOWHERE"
    districts.loc[3, "latitude"] = 10.0
    with pytest.raises(pa.errors.SchemaErrors) as raised:
        HousingDistricts.validate(districts, lazy=True)
    assert set(raised.value.failure_cases["index"].dropna().astype(int)) == {1, 2, 3}


def test_column_rules_are_read_from_the_pandera_model() -> None:
    rules = column_rules()
    assert tuple(rules) == FEATURE_COLUMNS and TARGET_COLUMN not in rules
    assert rules["median_income"].minimum == 0 and not rules["median_income"].minimum_inclusive
    assert rules["median_income"].maximum == 16 and not rules["median_income"].maximum_inclusive
    assert rules["ocean_proximity"].kind == "category" and "ISLAND" in rules["ocean_proximity"].allowed
    assert rules["total_bedrooms"].nullable and not rules["total_rooms"].nullable
    assert column_rules(include_target=True)[TARGET_COLUMN].maximum == 500_001
