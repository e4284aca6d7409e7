"""Hash-bucket split: shares, determinism across processes, stability when rows are appended."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from housing_platform.core.schema import FEATURE_COLUMNS, TARGET_COLUMN
from housing_platform.core.splits import (
    SPLIT_NAMES,
    TEST_BUCKETS,
    TOTAL_BUCKETS,
    VALIDATION_BUCKETS,
    assign_split,
    hash_buckets,
    row_hashes,
    split_frame,
)
from housing_platform_tests.factories import make_districts

DATA = Path(__file__).resolve().parents[2] / "data" / "california_housing.csv"

GOLDEN = pd.DataFrame(
    {
        "longitude": [-122.23, -118.0, -120.5],
        "latitude": [37.88, 34.0, 36.1],
        "housing_median_age": [41.0, 5.0, 52.0],
        "total_rooms": [880.0, 2000.0, 100.0],
        "total_bedrooms": [129.0, np.nan, 20.0],
        "population": [322.0, 1000.0, 50.0],
        "households": [126.0, 400.0, 20.0],
        "median_income": [8.3252, 3.0, 1.5],
        "ocean_proximity": ["NEAR BAY", "INLAND", "ISLAND"],
    }
)
GOLDEN_HASHES = [0x6C42854E55B0F5FF, 0x079C9B06A83CAFD3, 0x20436ECA5033FB11]
GOLDEN_BUCKETS = [51, 3, 45]


@pytest.fixture(scope="module")
def districts() -> pd.DataFrame:
    return make_districts(5_000, missing_bedrooms_share=0.01)


def test_shares_match_the_buckets(districts):
    shares = assign_split(districts).value_counts(normalize=True)
    assert set(shares.index) == set(SPLIT_NAMES)
    assert shares["test"] == pytest.approx(TEST_BUCKETS / TOTAL_BUCKETS, abs=0.02)
    assert shares["validation"] == pytest.approx(VALIDATION_BUCKETS / TOTAL_BUCKETS, abs=0.015)
    # The validation slice is ~10 % of the non-test rows.
    assert shares["validation"] / (1 - shares["test"]) == pytest.approx(0.10, abs=0.02)


def test_appending_rows_never_moves_an_old_row(districts):
    before = assign_split(districts)
    newcomers = make_districts(3_000, seed=1, missing_bedrooms_share=0.01).assign(row_id=-1)
    old = districts.assign(row_id=np.arange(len(districts)))  # an extra column: not hashed
    grown = pd.concat([newcomers.iloc[:1_000], old, newcomers.iloc[1_000:]], ignore_index=True)
    grown = grown.sample(frac=1.0, random_state=3)  # shuffled, with a different index
    after = assign_split(grown)
    kept = grown["row_id"].to_numpy() >= 0
    moved_back = pd.Series(after[kept].to_numpy(), index=grown.loc[kept, "row_id"].to_numpy()).sort_index()
    np.testing.assert_array_equal(moved_back.to_numpy(), before.to_numpy())
    assert after[~kept].nunique() == 3  # the newcomers are spread over all three splits


def test_split_depends_on_features_only(districts):
    changed = districts.assign(**{TARGET_COLUMN: districts[TARGET_COLUMN] * 2 + 1, "extra": 1.0})
    changed.index = changed.index + 10_000
    np.testing.assert_array_equal(assign_split(changed).to_numpy(), assign_split(districts).to_numpy())
    moved = districts.assign(median_income=districts["median_income"] + 0.5)
    assert not np.any(row_hashes(moved) == row_hashes(districts))
    # A re-hashed row lands in a different split with probability 1 - (0.72² + 0.08² + 0.2²) ≈ 0.44.
    changed_share = (assign_split(moved).to_numpy() != assign_split(districts).to_numpy()).mean()
    assert changed_share == pytest.approx(0.44, abs=0.04)


def test_values_are_canonicalised_and_duplicates_share_a_split():
    as_floats = GOLDEN.copy()
    as_ints = GOLDEN.assign(housing_median_age=GOLDEN["housing_median_age"].astype(int))
    nearly = GOLDEN.assign(total_rooms=GOLDEN["total_rooms"] + 1e-9)
    for other in (as_ints, nearly):
        np.testing.assert_array_equal(row_hashes(other), row_hashes(as_floats))
    duplicated = pd.concat([GOLDEN] * 4, ignore_index=True)
    assert duplicated.groupby(np.tile(np.arange(3), 4)).apply(lambda g: assign_split(g).nunique()).max() == 1
    # ...while a real change of any single feature changes the hash.
    for column in FEATURE_COLUMNS:
        changed = GOLDEN.copy()
        if column == "ocean_proximity":
            changed[column] = ["INLAND", "ISLAND", "NEAR BAY"]
        else:
            changed[column] = changed[column].fillna(0) + 1
        assert not np.any(row_hashes(changed) == row_hashes(GOLDEN)), column


def test_golden_hashes_pin_the_algorithm():
    assert [int(h) for h in row_hashes(GOLDEN)] == GOLDEN_HASHES
    assert hash_buckets(GOLDEN).tolist() == GOLDEN_BUCKETS


def test_hash_is_identical_in_another_process_with_another_hash_seed():
    code = (
        "import json, sys, pandas as pd; from housing_platform.core.splits import row_hashes; "
        "frame = pd.read_json(sys.stdin, orient='split'); print(json.dumps([int(h) for h in row_hashes(frame)]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    output = subprocess.run(
        [sys.executable, "-c", code], input=GOLDEN.to_json(orient="split"), capture_output=True, text=True,
        env=env, check=True, timeout=120,
    ).stdout
    assert json.loads(output) == GOLDEN_HASHES


def test_split_frame_partitions_the_rows(districts):
    splits = split_frame(districts)
    assert sum(splits.sizes.values()) == len(districts)
    for part in (splits.train, splits.validation, splits.test):
        assert list(part.columns) == list(districts.columns)
        assert part.index.equals(pd.RangeIndex(len(part)))
    keys = {name: set(map(tuple, getattr(splits, name)[list(FEATURE_COLUMNS)].astype(str).to_numpy()))
            for name in SPLIT_NAMES}
    assert not keys["train"] & keys["test"] and not keys["validation"] & keys["test"]


def test_missing_feature_column_is_an_error(districts):
    with pytest.raises(KeyError, match="median_income"):
        assign_split(districts.drop(columns="median_income"))


def test_real_data_split_sizes_are_pinned():
    from housing_platform.core.validation import read_housing_csv, validate_housing_frame

    valid = validate_housing_frame(read_housing_csv(DATA)).valid
    assert split_frame(valid).sizes == {"train": 14_854, "validation": 1_634, "test": 4_149}
