"""The `scoring_failures` table: aggregates written and read back per window, on SQLite and PostgreSQL, and an
old store (captures and feedback only) gains the table without losing its rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from housing_platform.adapters.capture.failures import (
    FINITE_PREDICTION,
    SCORING_ERROR,
    FailureRow,
    failed_rows_by_version,
    insert_failures,
    read_failures,
)
from housing_platform.adapters.capture.records import CaptureRecord
from housing_platform.adapters.capture.store import CaptureStore
from housing_platform.adapters.capture.tables import captures_table, feedback_table
from housing_platform_tests.adapters.test_capture_migrations import FEATURES

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def rows() -> list[FailureRow]:
    return [
        FailureRow(T0, "2", FINITE_PREDICTION, failed_rows=7, failed_requests=2),
        FailureRow(T0 + timedelta(minutes=1), "2", SCORING_ERROR, failed_rows=40, failed_requests=1),
        FailureRow(T0 + timedelta(minutes=2), "1", FINITE_PREDICTION, failed_rows=1, failed_requests=1),
        FailureRow(T0 + timedelta(hours=2), "2", FINITE_PREDICTION, failed_rows=100, failed_requests=5),
    ]


def check_round_trip(store: CaptureStore) -> None:
    insert_failures(store, rows())
    everything = read_failures(store)
    assert len(everything) == 4 and everything["recorded_at"].is_monotonic_increasing
    assert str(everything["recorded_at"].dt.tz) == "UTC"
    assert failed_rows_by_version(everything) == {"1": 1, "2": 147}
    window = read_failures(store, T0, T0 + timedelta(hours=1))  # [start, end): the 2-hour-later aggregate is out
    assert failed_rows_by_version(window) == {"1": 1, "2": 47}
    assert window.loc[window["rule"] == SCORING_ERROR, "failed_requests"].tolist() == [1]


def test_failures_round_trip_per_version_and_window_on_sqlite(sqlite_store):
    check_round_trip(sqlite_store)


@pytest.mark.postgres
def test_failures_round_trip_per_version_and_window_on_postgres(postgres_url, postgres_schema):
    store = CaptureStore(postgres_url, schema=postgres_schema)
    try:
        check_round_trip(store)
        with store.engine.connect() as conn:
            tables = sa.inspect(conn).get_table_names(schema=postgres_schema)
        assert "scoring_failures" in tables  # in the store's own schema, beside captures
    finally:
        store.dispose()


def test_no_failures_read_as_an_empty_frame_and_no_version(sqlite_store):
    frame = read_failures(sqlite_store)
    assert frame.empty and list(frame.columns) == ["recorded_at", "model_version", "rule", "failed_rows",
                                                   "failed_requests"]
    assert failed_rows_by_version(frame) == {}


def test_an_old_store_gains_the_failures_table_and_keeps_its_captures(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = sa.MetaData()
    old_captures = sa.Table("captures", old, *(c._copy() for c in captures_table.columns))
    sa.Table("feedback", old, *(c._copy() for c in feedback_table.columns))
    engine = sa.create_engine(url)
    row = CaptureRecord.from_features(FEATURES, prediction=250_000.0, model_version="1", latency_ms=1.0,
                                      captured_at=T0)
    with engine.begin() as conn:
        old.create_all(conn)
        conn.execute(old_captures.insert(), [dict(zip(old_captures.columns.keys(), row))])
        assert "scoring_failures" not in sa.inspect(conn).get_table_names()
    engine.dispose()

    store = CaptureStore(url)
    try:
        insert_failures(store, rows()[:1])
        assert failed_rows_by_version(read_failures(store)) == {"2": 7}
        assert store.count_captures() == 1
    finally:
        store.dispose()
