"""The capture writer's bulk paths (SQLite ``executemany``, PostgreSQL binary ``COPY`` assembled by numpy)
against real databases: what they write reads back exactly as sent — NULLs, non-ASCII text, empty text,
extreme floats — and a nullable text or float column added to the table is written without a change
to the bulk code (the table definition is all it reads).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import psycopg2
import pytest
from sqlalchemy import Column, Float, MetaData, String, Table, create_engine, select
from sqlalchemy.engine import make_url

from housing_platform.adapters.capture import bulk
from housing_platform.adapters.capture.store import CaptureStore
from housing_platform.adapters.capture.tables import captures_table
from housing_platform.adapters.capture.writer import CaptureWriter
from housing_platform.devtools.capture_samples import make_records


def awkward_records():
    """Rows that stress the encoders: NULL, non-ASCII and empty text, floats at the ends of float64."""
    records = make_records(7, start=datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC))
    records[0] = records[0]._replace(total_bedrooms=None)
    records[1] = records[1]._replace(out_of_range="médian_income,ünit", model_version="v-ü")
    records[2] = records[2]._replace(out_of_range="", total_bedrooms=None, prediction=1.7976931348623157e308)
    records[3] = records[3]._replace(latency_ms=5e-324, longitude=-0.0)
    records[4] = records[4]._replace(captured_at=datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))
    records[5] = records[5]._replace(captured_at=datetime(2026, 3, 1, 14, 0, tzinfo=UTC) + timedelta(microseconds=1))
    return records


def read_back(engine, table: Table, schema: str | None = None) -> dict[str, tuple]:
    source = table.to_metadata(MetaData(), schema=schema) if schema else table
    with engine.connect() as conn:
        return {row[0]: tuple(row) for row in conn.execute(select(source))}


def assert_same_rows(sent: list[tuple], stored: dict[str, tuple]) -> None:
    assert len(stored) == len(sent)
    for row in sent:
        # Exact equality: floats travel as binary float64 (COPY) or bound doubles (SQLite), never as
        # text, so every bit must survive; timestamps keep their microseconds.
        assert stored[row[0]] == tuple(row), row[0]


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "sqlite":
        capture = CaptureStore(f"sqlite:///{tmp_path / 'capture.db'}")
    else:
        schema = request.getfixturevalue("postgres_schema")
        capture = CaptureStore(request.getfixturevalue("postgres_url"), schema=schema)
    yield capture
    capture.dispose()


def test_rows_written_by_the_bulk_path_read_back_exactly_as_sent_nulls_included(store):
    records = awkward_records()
    store.insert_captures(records)
    assert_same_rows(records, read_back(store.engine, captures_table))


def extended_table() -> Table:
    """The captures table plus one nullable text and one nullable float column, as a later version may add."""
    return Table(
        "captures", MetaData(),
        *(Column(c.name, c.type, nullable=c.nullable, primary_key=c.primary_key) for c in captures_table.columns),
        Column("added_text", String, nullable=True),
        Column("added_value", Float, nullable=True),
    )


def extended_rows() -> list[tuple]:
    records = awkward_records()
    extra = [("4", 123456.5), (None, None), ("5", None), (None, 98765.25), ("ü", 0.0), ("", -1e-300), ("4", 1.0)]
    return [(*record, *more) for record, more in zip(records, extra)]


def test_added_nullable_text_and_float_columns_are_written_by_the_sqlite_path_unchanged(tmp_path):
    table = extended_table()
    path = tmp_path / "extended.db"
    engine = create_engine(f"sqlite:///{path}")
    table.metadata.create_all(engine)
    rows = extended_rows()
    with sqlite3.connect(path) as conn:
        conn.executemany(bulk.sqlite_insert(table), bulk.sqlite_rows(rows, table))
    assert_same_rows(rows, read_back(engine, table))
    engine.dispose()


def test_added_nullable_text_and_float_columns_are_written_by_the_copy_path_unchanged(postgres_url, postgres_schema):
    table = extended_table()
    engine = create_engine(postgres_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{postgres_schema}"')
    placed = table.to_metadata(MetaData(), schema=postgres_schema)
    placed.metadata.create_all(engine)
    rows = extended_rows()
    url = make_url(postgres_url)
    with psycopg2.connect(host=url.host, port=url.port, user=url.username, password=url.password,
                          dbname=url.database) as conn, conn.cursor() as cursor:
        cursor.copy_expert(bulk.copy_binary_statement(postgres_schema, table), bulk.copy_binary(rows, table))
    assert_same_rows(rows, read_back(engine, table, postgres_schema))
    engine.dispose()


def test_a_row_of_the_wrong_width_is_refused_naming_both_counts():
    width = len(captures_table.columns)
    with pytest.raises(ValueError, match=f"{width + 1} values, the table has {width} columns"):
        bulk.copy_binary([(*awkward_records()[0], None)])


def test_rows_written_through_the_writer_read_back_exactly_as_sent(store, writers):
    """The writer's path: on PostgreSQL the builder thread encodes the COPY rows ahead of the insert."""
    records = awkward_records()
    writer = CaptureWriter(store, max_wait_seconds=0.01)
    writers.append(writer)
    for i in range(0, len(records), 2):  # several requests merged into one batch: their encodings concatenate
        writer.submit(records[i : i + 2])
    assert writer.flush(timeout=10)
    assert_same_rows(records, read_back(store.engine, captures_table))
