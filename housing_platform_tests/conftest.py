"""Shared fixtures: tiny, valid district tables and an isolated state folder per test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from housing_platform.schema import OCEAN_PROXIMITY_CATEGORIES
from housing_platform.settings import DEFAULT_DATA_PATH, HousingSettings, disable_telemetry

disable_telemetry()


def make_districts(rows: int = 200, seed: int = 0) -> pd.DataFrame:
    """Synthetic districts that satisfy every schema rule, with a price that depends on the features."""
    rng = np.random.default_rng(seed)
    households = rng.integers(50, 1_500, rows).astype(float)
    population = households * rng.uniform(1.5, 4.0, rows)
    total_rooms = households * rng.uniform(3.0, 7.0, rows)
    total_bedrooms = total_rooms * rng.uniform(0.15, 0.3, rows)
    median_income = rng.uniform(0.5, 15.0, rows)
    ocean = rng.choice(OCEAN_PROXIMITY_CATEGORIES[:4], rows)
    value = np.clip(40_000 + 35_000 * median_income + rng.normal(0, 20_000, rows), 15_000, 500_001)
    return pd.DataFrame(
        {
            "longitude": rng.uniform(-124.0, -114.5, rows).round(2),
            "latitude": rng.uniform(32.6, 41.9, rows).round(2),
            "housing_median_age": rng.integers(1, 53, rows).astype(float),
            "total_rooms": total_rooms.round(),
            "total_bedrooms": total_bedrooms.round(),
            "population": population.round(),
            "households": households,
            "median_income": median_income.round(4),
            "ocean_proximity": ocean,
            "median_house_value": value.round(),
        }
    )


@pytest.fixture
def districts() -> pd.DataFrame:
    return make_districts()


@pytest.fixture
def districts_csv(tmp_path: Path, districts: pd.DataFrame) -> Path:
    path = tmp_path / "districts.csv"
    districts.to_csv(path, index=False)
    return path


@pytest.fixture
def real_data_path() -> Path:
    assert DEFAULT_DATA_PATH.exists(), f"the dataset is missing: {DEFAULT_DATA_PATH}"
    return DEFAULT_DATA_PATH


@pytest.fixture
def housing_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HousingSettings:
    """A fresh state folder for the test; HOUSING_HOME points at it."""
    home = tmp_path / "state"
    monkeypatch.setenv("HOUSING_HOME", str(home))
    monkeypatch.delenv("HOUSING_DATA_PATH", raising=False)
    return HousingSettings.from_env()
