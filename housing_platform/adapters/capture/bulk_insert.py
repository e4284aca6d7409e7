"""One batch of capture rows into the store, in one transaction, by the fastest path the driver has
(:mod:`.bulk`): SQLite's prepared ``executemany``, psycopg2's binary ``COPY``, else SQLAlchemy's
``insert()``. ``skip_existing`` (draining the spill, which may hold rows already stored) skips rows
whose request id is stored: SQLite ``INSERT OR IGNORE``; PostgreSQL ``COPY`` into a temporary table,
then ``INSERT ... SELECT ... ON CONFLICT (request_id) DO NOTHING``; others row by row.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from housing_platform.adapters.capture.bulk import copy_binary, copy_binary_statement, sqlite_insert, sqlite_rows
from housing_platform.adapters.capture.records import CaptureRecord, record_params
from housing_platform.adapters.capture.tables import CAPTURE_COLUMNS, captures_table

_INCOMING = "captures_incoming"
COPY_CHUNK_BYTES = 1 << 20  # psycopg2 reads the COPY data in chunks of this (its default, 8 KiB, is 150 calls a batch)


def insert_batch(engine: Engine, conn: Connection, path: str | None, records: Sequence[CaptureRecord],
                 schema: str | None, *, skip_existing: bool = False) -> None:
    """Insert ``records`` through ``conn`` (inside its transaction) by ``path`` (``sqlite``, ``copy`` or None)."""
    if path == "sqlite":
        conn.exec_driver_sql(sqlite_insert(captures_table, skip_existing=skip_existing), sqlite_rows(records))
    elif path == "copy" and not skip_existing:
        _copy(engine, conn, copy_binary_statement(schema), records)
    elif path == "copy":
        table = f'"{schema}".captures' if schema else "captures"
        columns = ", ".join(CAPTURE_COLUMNS)
        conn.exec_driver_sql(f"CREATE TEMP TABLE {_INCOMING} (LIKE {table}) ON COMMIT DROP")
        _copy(engine, conn, f"COPY {_INCOMING} ({columns}) FROM STDIN (FORMAT binary)", records)
        conn.exec_driver_sql(
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {_INCOMING} ON CONFLICT (request_id) DO NOTHING"
        )
    elif not skip_existing:
        conn.execute(captures_table.insert(), [record_params(record) for record in records])
    else:
        for record in records:
            try:
                with conn.begin_nested():
                    conn.execute(captures_table.insert(), record_params(record))
            except sa_exc.IntegrityError:
                continue  # already stored


def _copy(engine: Engine, conn: Connection, statement: str, records: Sequence[CaptureRecord]) -> None:
    """``COPY`` the rows through the connection's psycopg2 cursor, errors wrapped as SQLAlchemy's."""
    fairy = conn.connection
    dbapi = engine.dialect.loaded_dbapi
    cursor = fairy.dbapi_connection.cursor()
    try:
        cursor.copy_expert(statement, copy_binary(records), size=COPY_CHUNK_BYTES)
    except dbapi.Error as error:
        disconnected = engine.dialect.is_disconnect(error, fairy.dbapi_connection, cursor)
        if disconnected:
            conn.invalidate(error)
        raise sa_exc.DBAPIError.instance(
            statement, None, error, dbapi.Error, connection_invalidated=disconnected, dialect=engine.dialect,
        ) from error
    finally:
        if not cursor.closed:
            cursor.close()
