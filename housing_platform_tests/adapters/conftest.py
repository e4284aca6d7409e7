"""Fixtures of the capture tests: a SQLite store in tmp_path, writers that are always closed, and a
PostgreSQL schema of the test's own (on the root conftest's `postgres_url`).
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import create_engine, text

from housing_platform.adapters.capture.store import CaptureStore
from housing_platform.adapters.capture.writer import CaptureWriter


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


@pytest.fixture
def postgres_schema(postgres_url):
    """A schema unique to this test, dropped with everything in it afterwards."""
    schema = f"capture_test_{uuid.uuid4().hex[:12]}"
    yield schema
    engine = create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()
