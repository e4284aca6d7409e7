"""Validation splits a table into valid rows and a quarantine, and raises on structural failures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from housing_platform.core.validation import (
    FAILED_RULES_COLUMN,
    SOURCE_ROW_COLUMN,
    StructuralValidationError,
    UnreadableDataError,
    evaluate_data_gate,
    read_housing_csv,
    validate_housing_frame,
)


def gate_by_name(outcome, **limits):
    return {result.name: result for result in evaluate_data_gate(outcome, **limits)}


def test_real_dataset_passes_with_three_rows_quarantined(real_data_path: Path) -> None:
    outcome = validate_housing_frame(read_housing_csv(real_data_path))
    assert outcome.input_rows == 20_640
    # Three districts report more households than people: they are the only rule breakers.
    assert len(outcome.quarantine) == 3
    assert set(outcome.quarantine[FAILED_RULES_COLUMN]) == {"households <= population"}
    assert len(outcome.valid) == 20_637
    assert outcome.valid["total_bedrooms"].isna().sum() == 207
    assert all(result.passed for result in evaluate_data_gate(outcome))


def test_row_level_failures_are_quarantined_with_their_rules(districts: pd.DataFrame) -> None:
    districts.loc[4, "median_income"] = 25.0
    districts.loc[4, "ocean_proximity"] = "MARS"
    districts.loc[9, "households"] = districts.loc[9, "population"] + 10
    outcome = validate_housing_frame(districts)

    assert len(outcome.valid) == len(districts) - 2
    quarantine = outcome.quarantine.set_index(SOURCE_ROW_COLUMN)
    # CSV line numbers: the header is line 1, row 0 is line 2.
    assert "median_income: < 16" in quarantine.loc[6, FAILED_RULES_COLUMN]
    assert "ocean_proximity: one of" in quarantine.loc[6, FAILED_RULES_COLUMN]
    assert quarantine.loc[11, FAILED_RULES_COLUMN] == "households <= population"
    # The quarantined values are kept as they came in.
    assert quarantine.loc[6, "ocean_proximity"] == "MARS"
    summary = outcome.summary.set_index("rule")
    assert summary.loc["< 16", "column"] == "median_income"
    assert summary.loc["< 16", "failing_count"] == 1


def test_missing_column_is_structural_and_names_the_column(districts: pd.DataFrame) -> None:
    with pytest.raises(StructuralValidationError) as raised:
        validate_housing_frame(districts.drop(columns=["median_income"]))
    assert "median_income" in str(raised.value) and "required column" in str(raised.value)


def test_unparseable_type_is_structural_and_names_the_column(districts: pd.DataFrame) -> None:
    districts["total_rooms"] = districts["total_rooms"].astype(object)
    districts.loc[2, "total_rooms"] = "lots"
    with pytest.raises(StructuralValidationError) as raised:
        validate_housing_frame(districts)
    message = str(raised.value)
    assert "total_rooms" in message and "type float64" in message and "'lots'" in message


def test_extra_columns_are_ignored_and_reported(districts: pd.DataFrame) -> None:
    outcome = validate_housing_frame(districts.assign(comment="x"))
    assert outcome.extra_columns == ["comment"] and "comment" not in outcome.valid.columns


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"", "empty"), (b"longitude,latitude\n", "no rows"), (b"\x00\xff\xfe binary", "not a readable CSV")],
)
def test_unreadable_files_raise_unreadable_data_error(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "file.csv"
    path.write_bytes(content)
    with pytest.raises(UnreadableDataError, match=reason):
        read_housing_csv(path)


def test_missing_file_and_directory_are_unreadable(tmp_path: Path) -> None:
    with pytest.raises(UnreadableDataError, match="no such file"):
        read_housing_csv(tmp_path / "absent.csv")
    with pytest.raises(UnreadableDataError, match="not a regular file"):
        read_housing_csv(tmp_path)


def test_gate_fails_when_too_many_rows_are_quarantined(districts: pd.DataFrame) -> None:
    districts.loc[:9, "median_income"] = 50.0  # 10 of 200 rows = 5%
    gate = gate_by_name(validate_housing_frame(districts), min_rows=10)
    assert not gate["quarantine_share_within_limit"].passed
    assert gate["quarantine_share_within_limit"].value == pytest.approx(0.05)
    assert gate_by_name(validate_housing_frame(districts), max_quarantine_share=0.06, min_rows=10)[
        "quarantine_share_within_limit"
    ].passed


def test_gate_fails_on_duplicates(districts: pd.DataFrame) -> None:
    doubled = pd.concat([districts, districts.head(20)], ignore_index=True)
    gate = gate_by_name(validate_housing_frame(doubled), min_rows=10)
    assert not gate["duplicate_share_within_limit"].passed
    assert gate_by_name(validate_housing_frame(districts), min_rows=10)["duplicate_share_within_limit"].passed


def test_gate_fails_when_nulls_exceed_the_allowance(districts: pd.DataFrame) -> None:
    assert gate_by_name(validate_housing_frame(districts), min_rows=10)["null_share_within_allowance"].passed
    districts.loc[:19, "total_bedrooms"] = np.nan  # 10% > 5% allowance
    gate = gate_by_name(validate_housing_frame(districts), min_rows=10)
    assert not gate["null_share_within_allowance"].passed
    assert "total_bedrooms" in gate["null_share_within_allowance"].description


def test_gate_counts_nulls_in_columns_without_allowance(districts: pd.DataFrame) -> None:
    districts.loc[0, "median_income"] = np.nan
    gate = gate_by_name(validate_housing_frame(districts), min_rows=10)
    assert not gate["null_share_within_allowance"].passed
    assert "median_income" in gate["null_share_within_allowance"].description


def test_gate_requires_a_minimum_number_of_rows(districts: pd.DataFrame) -> None:
    outcome = validate_housing_frame(districts)
    assert not gate_by_name(outcome)["enough_rows"].passed  # 200 < 1,000
    assert gate_by_name(outcome, min_rows=200)["enough_rows"].passed
