"""The capture writer's bulk paths, past SQLAlchemy's per-row work: SQLite gets one prepared INSERT run
by ``executemany`` over plain tuples (the statement is compiled once by sqlite3's statement cache),
PostgreSQL one ``COPY ... FROM STDIN`` of tab-separated text per batch (psycopg2's ``copy_expert``).
Both write exactly what the SQLAlchemy table definition would (:mod:`.tables`): timestamps in UTC, in
SQLite as the text SQLAlchemy's ``DATETIME`` stores, so readers see no difference.

Measured by ``benchmarks/capture.py``; the SQLAlchemy ``insert()`` of a list of dicts this replaces
wrote about 10–15k rows/s on a 2-core machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from io import StringIO

from housing_platform.adapters.capture.records import CaptureRecord
from housing_platform.adapters.capture.tables import CAPTURE_COLUMNS

_CAPTURED_AT = CAPTURE_COLUMNS.index("captured_at")
_COLUMN_LIST = ", ".join(CAPTURE_COLUMNS)
SQLITE_INSERT = f"INSERT INTO captures ({_COLUMN_LIST}) VALUES ({', '.join('?' * len(CAPTURE_COLUMNS))})"
# COPY's text format: backslash, tab, newline and carriage return are escaped; NULL is \N.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def sqlite_stamp(value: datetime) -> str:
    """The text SQLAlchemy's SQLite ``DATETIME`` stores for this instant (naive UTC, microseconds)."""
    v = _utc(value)
    return (
        f"{v.year:04d}-{v.month:02d}-{v.day:02d} {v.hour:02d}:{v.minute:02d}:{v.second:02d}.{v.microsecond:06d}"
    )


def sqlite_rows(records: Sequence[CaptureRecord]) -> list[tuple]:
    """The records as parameter tuples for :data:`SQLITE_INSERT`, in column order.

    A request's rows share one capture time, so each distinct time is formatted once.
    """
    stamps: dict[datetime, str] = {}
    rows = []
    append = rows.append
    i = _CAPTURED_AT
    for values in records:
        when = values[i]
        stamp = stamps.get(when)
        if stamp is None:
            stamp = stamps[when] = sqlite_stamp(when)
        append((*values[:i], stamp, *values[i + 1 :]))
    return rows


def _copy_field(value) -> str:
    if value is None:
        return "\\N"
    if type(value) is float:
        return repr(value)
    if isinstance(value, str):
        return value.translate(_COPY_ESCAPES)
    return str(value).translate(_COPY_ESCAPES)


def copy_text(records: Sequence[CaptureRecord]) -> StringIO:
    """The records as the text of ``COPY captures (<columns>) FROM STDIN`` (one line per row)."""
    stamps: dict[datetime, str] = {}
    lines = []
    append = lines.append
    field = _copy_field
    i = _CAPTURED_AT
    for values in records:
        when = values[i]
        stamp = stamps.get(when)
        if stamp is None:
            stamp = stamps[when] = _utc(when).isoformat(sep=" ")
        append("\t".join([*map(field, values[:i]), stamp, *map(field, values[i + 1 :])]))
    lines.append("")
    return StringIO("\n".join(lines))


def copy_statement(schema: str | None) -> str:
    table = f'"{schema}".captures' if schema else "captures"
    return f"COPY {table} ({_COLUMN_LIST}) FROM STDIN"
