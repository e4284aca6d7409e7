"""Shared fixtures: tiny, valid district tables, an isolated state folder per test, the local PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy import exc as sa_exc

from housing_platform.config.settings import DEFAULT_DATA_PATH, HousingSettings
from housing_platform.devtools.tiny_models import RegisteredModels, registered_models
from housing_platform_tests.factories import make_districts

POSTGRES_SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432"  # this machine's server: trust auth



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


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The local PostgreSQL server's URL without a database; skips, naming why, only if it does not answer."""
    engine = create_engine(f"{POSTGRES_SERVER}/postgres", connect_args={"connect_timeout": 2})
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    except sa_exc.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_SERVER}: {exc.orig}")
    finally:
        engine.dispose()
    return POSTGRES_SERVER


@pytest.fixture(scope="session")
def postgres_url(postgres_server: str) -> str:
    """The ``test`` database of the local PostgreSQL server."""
    return f"{postgres_server}/test"


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> RegisteredModels:
    """Small real registered models (devtools.tiny_models): v1 champion, v2 registered; built once per session."""
    return registered_models(tmp_path_factory)


@pytest.fixture(scope="session")
def champion_pyfunc(models: RegisteredModels):
    """The champion as ``mlflow.pyfunc.load_model`` returns it: the reference the fast path must match."""
    return models.load_pyfunc(models.versions[0])
