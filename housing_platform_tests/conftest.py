"""Shared fixtures: tiny, valid district tables and an isolated state folder per test."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from housing_platform.config.settings import DEFAULT_DATA_PATH, HousingSettings
from housing_platform_tests.factories import make_districts



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
