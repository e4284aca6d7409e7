"""The capture writer's bulk paths, past SQLAlchemy's per-row work, built column by column: SQLite gets
one prepared INSERT run by ``executemany`` over tuples zipped from the columns (the statement is
compiled once by sqlite3's statement cache), PostgreSQL one ``COPY ... FROM STDIN (FORMAT binary)``
per batch (psycopg2's ``copy_expert``) whose bytes are assembled by numpy for the whole batch: each
column becomes one big-endian array (``>i4`` lengths with -1 for NULL, ``>f8`` floats, ``>i8``
timestamps) or one blob of concatenated UTF-8 text, scattered into the output buffer at offsets
computed from the row lengths. No Python code runs per row and field (the ``struct.pack`` per row
this replaces capped the PostgreSQL path at ~45k rows/s on a 2-core machine).

Everything is derived from the table definition (:mod:`.tables`; a ``Table`` argument, the captures
table by default): a column is a timestamp (``UTCDateTime``), a float (``Float``) or text (``String``),
nullable or not, so a column added there is written without a change here. Both paths write exactly
what the SQLAlchemy table definition would: timestamps in UTC, in SQLite as the text SQLAlchemy's
``DATETIME`` stores, so readers see no difference. A float NaN is written as NULL on both (SQLite
stores NaN as NULL anyway; the schema refuses NaN features, so the only NaN is a null).

Measured by ``benchmarks/capture.py``.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from io import BytesIO

import numpy as np
from sqlalchemy import Float, String, Table

from housing_platform.adapters.capture.tables import UTCDateTime, captures_table

_FLOAT, _TIME, _TEXT = "f", "t", "s"


def _kind(column) -> str:
    if isinstance(column.type, UTCDateTime):
        return _TIME
    if isinstance(column.type, Float):
        return _FLOAT
    if isinstance(column.type, String):
        return _TEXT
    raise TypeError(f"no bulk encoding for column {column.name} of type {column.type}")


@lru_cache(maxsize=16)
def column_kinds(table: Table = captures_table) -> tuple[str, ...]:
    """One kind per column of ``table`` (``f`` float, ``t`` timestamp, ``s`` text), in column order."""
    return tuple(_kind(column) for column in table.columns)


def _column_list(table: Table) -> str:
    return ", ".join(column.name for column in table.columns)


@lru_cache(maxsize=16)
def sqlite_insert(table: Table = captures_table, *, skip_existing: bool = False) -> str:
    """The prepared INSERT of one row of ``table``; ``skip_existing``: a row whose key exists is skipped."""
    verb = "INSERT OR IGNORE" if skip_existing else "INSERT"
    marks = ", ".join("?" * len(table.columns))
    return f"{verb} INTO {table.name} ({_column_list(table)}) VALUES ({marks})"


SQLITE_INSERT = sqlite_insert(captures_table)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def sqlite_stamp(value: datetime) -> str:
    """The text SQLAlchemy's SQLite ``DATETIME`` stores for this instant (naive UTC, microseconds)."""
    v = _utc(value)
    return (
        f"{v.year:04d}-{v.month:02d}-{v.day:02d} {v.hour:02d}:{v.minute:02d}:{v.second:02d}.{v.microsecond:06d}"
    )


def _columns(records: Sequence[tuple], width: int) -> list[tuple]:
    columns = list(zip(*records))
    if len(columns) != width:
        raise ValueError(f"capture rows have {len(columns)} values, the table has {width} columns")
    return columns


def sqlite_rows(records: Sequence[tuple], table: Table = captures_table) -> list[tuple]:
    """The records (tuples in column order) as parameter tuples for :func:`sqlite_insert`.

    Only timestamp columns change (to SQLAlchemy's text); a request's rows share one capture time,
    so each distinct time is formatted once, and the rows are zipped back from the columns in C.
    """
    kinds = column_kinds(table)
    if not records:
        return []
    columns = _columns(records, len(kinds))
    for i, kind in enumerate(kinds):
        if kind == _TIME:
            column = columns[i]
            stamps = {when: None if when is None else sqlite_stamp(when) for when in set(column)}
            columns[i] = list(map(stamps.__getitem__, column))
    return list(zip(*columns))


def copy_statement(schema: str | None, table: Table = captures_table) -> str:
    name = f'"{schema}".{table.name}' if schema else table.name
    return f"COPY {name} ({_column_list(table)}) FROM STDIN"


def copy_binary_statement(schema: str | None, table: Table = captures_table) -> str:
    return copy_statement(schema, table) + " (FORMAT binary)"


# Binary COPY: signature, flags, header extension; each row: int16 field count, then per field an
# int32 length (-1 for NULL) and that many bytes; float8 big-endian; timestamptz as int64 microseconds
# since 2000-01-01 UTC; text as UTF-8. Trailer: int16 -1.
_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_BINARY_TRAILER = struct.pack(">h", -1)
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def _pg_micros(value: datetime) -> int:
    delta = _utc(value) - _PG_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


class _Field:
    """One column of a batch, encoded for binary COPY: ``lengths`` (-1 for NULL) and ``data``, an
    (n, width) byte matrix of the values padded to the batch's widest (only ``lengths`` bytes count)."""

    __slots__ = ("lengths", "data", "present")

    def __init__(self, lengths: np.ndarray, data: np.ndarray, present: np.ndarray | None):
        self.lengths = lengths  # int64, -1 for NULL
        self.data = data
        self.present = present  # (n, width) bool: the bytes that count; None: all of them


def _nulls(column: tuple) -> np.ndarray | None:
    return np.fromiter((v is None for v in column), dtype=bool, count=len(column)) if None in column else None


def _fixed_field(values: np.ndarray, nulls: np.ndarray | None) -> _Field:
    lengths = np.full(len(values), 8, dtype=np.int64)
    if nulls is not None:
        lengths[nulls] = -1
    present = None if nulls is None else np.repeat(~nulls[:, None], 8, axis=1)
    return _Field(lengths, values.view(np.uint8).reshape(-1, 8), present)


def _float_field(column: tuple) -> _Field:
    values = np.array(column, dtype=np.float64)  # None -> NaN
    nan = np.isnan(values)
    return _fixed_field(values.astype(">f8"), nan if nan.any() else None)


def _time_field(column: tuple) -> _Field:
    nulls = _nulls(column)
    micros = {when: 0 if when is None else _pg_micros(when) for when in set(column)}
    values = np.fromiter(map(micros.__getitem__, column), dtype=np.int64, count=len(column))
    return _fixed_field(values.astype(">i8"), nulls)


def _text_field(column: tuple) -> _Field:
    n = len(column)
    nulls = _nulls(column)
    texts = column if nulls is None else ["" if v is None else v for v in column]
    joined = "".join(texts)
    blob = joined.encode()
    if len(blob) == len(joined):  # all ASCII: a value's byte length is its character length
        lengths = np.fromiter(map(len, texts), dtype=np.int64, count=n)
    else:
        encoded = [text.encode() for text in texts]
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=n)
        blob = b"".join(encoded)
    width = int(lengths.max())
    present = np.arange(width) < lengths[:, None]
    data = np.zeros((n, width), dtype=np.uint8)
    data[present] = np.frombuffer(blob, dtype=np.uint8)  # row-major: each value left-aligned in its row
    if nulls is not None:
        lengths[nulls] = -1
    return _Field(lengths, data, present)


_ENCODERS = {_FLOAT: _float_field, _TIME: _time_field, _TEXT: _text_field}


class EncodedBatch(list):
    """Records with their binary COPY rows already encoded (``copy_body``), by the writer's builder thread."""

    copy_body: bytes | None = None  # set once encoded; a slice of the list is a plain list again


def copy_binary(records: Sequence[tuple], table: Table = captures_table) -> BytesIO:
    """The records (tuples in column order) as the data of ``COPY <table> (<columns>) FROM STDIN (FORMAT binary)``."""
    body = getattr(records, "copy_body", None)
    if body is None or table is not captures_table:
        body = copy_binary_body(records, table)
    return BytesIO(b"".join((_BINARY_HEADER, body, _BINARY_TRAILER)))


# Rows encoded per matrix: a (rows x widest row) matrix of a few hundred KiB stays in the CPU cache.
_ENCODE_ROWS = 1024


def copy_binary_body(records: Sequence[tuple], table: Table = captures_table) -> bytes:
    """The rows of binary COPY data, without header and trailer (bodies of consecutive batches concatenate)."""
    if len(records) <= _ENCODE_ROWS:
        return _encode_rows(records, table)
    return b"".join(_encode_rows(records[i : i + _ENCODE_ROWS], table) for i in range(0, len(records), _ENCODE_ROWS))


def _encode_rows(records: Sequence[tuple], table: Table) -> bytes:
    """Binary COPY rows of ``records``.

    Every row is laid out at the batch's widest in one (rows, width) byte matrix, filled a column at a
    time, with a mask of the bytes that count (padding of shorter text, NULL values); the masked bytes
    in row-major order are the COPY rows.
    """
    kinds = column_kinds(table)
    n = len(records)
    if not n:
        return b""
    fields = [_ENCODERS[kind](column) for kind, column in zip(kinds, _columns(records, len(kinds)))]
    width = 2 + sum(4 + field.data.shape[1] for field in fields)
    rows = np.empty((n, width), dtype=np.uint8)
    keep = np.ones((n, width), dtype=bool)
    rows[:, :2] = np.frombuffer(struct.pack(">h", len(fields)), dtype=np.uint8)
    at = 2
    for field in fields:
        rows[:, at : at + 4] = field.lengths.astype(">i4").view(np.uint8).reshape(n, 4)
        at += 4
        size = field.data.shape[1]
        if size:
            rows[:, at : at + size] = field.data
            if field.present is not None:
                keep[:, at : at + size] = field.present
            at += size
    return (rows[keep] if not keep.all() else rows.reshape(-1)).tobytes()
