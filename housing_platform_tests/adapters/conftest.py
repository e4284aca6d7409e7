"""Fixtures of the capture tests: a SQLite store in tmp_path, writers that are always closed, and a
PostgreSQL schema of the test's own (skipped, with the reason, only when nothing answers on 5432).
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy import exc as sa_exc

from housing_platform.adapters.capture.store import CaptureStore
from housing_platform.adapters.capture.writer import CaptureWriter
from housing_platform_tests.adapters.capture_support import POSTGRES_URL


@pytest.fixture
def writers():
    """Collects writers so a failing test still stops their threads."""
    started: list[CaptureWriter] = []
    yield started
    for writer in started:
        writer.close(timeout=1.0)


@pytest.fixture
def sqlite_store(tmp_path):
    store = CaptureStore(f"sqlite:///{tmp_path / 'capture' / 'capture.db'}")
    yield store
    store.dispose()


@pytest.fixture(scope="module")
def postgres_url():
    engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 2})
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    except sa_exc.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {exc.orig}")
    finally:
        engine.dispose()
    return POSTGRES_URL


@pytest.fixture
def postgres_schema(postgres_url):
    """A schema unique to this test, dropped with everything in it afterwards."""
    schema = f"capture_test_{uuid.uuid4().hex[:12]}"
    yield schema
    engine = create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()
