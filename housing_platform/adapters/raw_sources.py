"""Read the raw districts from a local file, an S3 object or a PostgreSQL table, and hash their content.

:func:`read_raw_source` turns every way a source can be unreadable (a missing file, key, bucket or
table, a file that is not CSV/Parquet, a failing query, no rows) into
:class:`~housing_platform.core.validation.UnreadableDataError` naming the source, never a half-read
frame. :func:`content_sha256` is the asset's data version: a SHA-256 of the values themselves, not
of the bytes that carried them, so the same table read from a CSV file, a Parquet object on S3 or a
PostgreSQL table has the same version (and downstream assets are not made stale by a change of
storage format). Values are compared as numbers where they are numbers (an integer column stored as
float is the same data) and as text otherwise; column names, column order and row order count.

No Dagster here: the asset (``defs/ingestion/assets.py``) passes in the boto3 client it built.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from housing_platform.config.raw_source import RawSource, file_format
from housing_platform.core.validation import UnreadableDataError, read_housing_csv


@dataclass(frozen=True)
class RawData:
    """What was read, where from, and the two hashes the asset records."""

    frame: pd.DataFrame
    location: str  # shown in logs and metadata; a database URL without password
    content_sha256: str  # the data version: the same values give the same hash whatever the storage
    bytes_sha256: str | None  # the file or object as stored (None for a database)


def content_sha256(frame: pd.DataFrame) -> str:
    """SHA-256 of a frame's column names and values, independent of the storage format they came in."""
    digest = hashlib.sha256()
    digest.update(json.dumps([str(name) for name in frame.columns]).encode())
    digest.update(f"rows={len(frame)}".encode())
    for name in frame.columns:
        column = frame[name]
        numbers = _as_numbers(column)
        if numbers is not None:
            # One NaN bit pattern and no negative zero, so every reader's nulls and zeros hash alike.
            values = np.where(np.isnan(numbers), np.nan, numbers) + 0.0
            digest.update(b"\x00number\x00" + values.astype("<f8").tobytes())
        else:
            texts = [None if _is_null(value) else str(value) for value in column.tolist()]
            digest.update(b"\x00text\x00" + json.dumps(texts).encode())
    return digest.hexdigest()


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA or value is pd.NaT


def _as_numbers(column: pd.Series) -> np.ndarray | None:
    """The column as float64 if every value is a number (or null); None for text."""
    if pd.api.types.is_bool_dtype(column):
        return None
    if pd.api.types.is_numeric_dtype(column):
        return column.astype("float64").to_numpy()
    values = column.tolist()
    if values and all(_is_null(v) or (isinstance(v, (int, float, Decimal)) and not isinstance(v, bool)) for v in values):
        if all(_is_null(v) for v in values):
            return None  # an all-null column has no type to agree on: hashed as text
        return np.array([np.nan if _is_null(v) else float(v) for v in values], dtype="float64")
    return None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _parse(data: bytes, suffix: str, location: str) -> pd.DataFrame:
    try:
        if suffix == ".parquet":
            frame = pd.read_parquet(io.BytesIO(data))
        else:
            frame = pd.read_csv(io.BytesIO(data))
    except pd.errors.EmptyDataError:
        raise UnreadableDataError(f"{location}: the file is empty (no header, no rows)") from None
    except Exception as error:  # pyarrow and the CSV parser raise many types for a damaged file
        kind = "Parquet" if suffix == ".parquet" else "CSV"
        raise UnreadableDataError(f"{location}: not a readable {kind} file ({error.__class__.__name__}: {error})") from None
    if frame.empty:
        raise UnreadableDataError(f"{location}: the source has a header but no rows")
    return frame


def read_file(path: str | Path) -> RawData:
    """A local CSV or Parquet file."""
    path = Path(str(path).removeprefix("file://"))
    suffix = file_format(str(path))
    if suffix == ".csv":
        frame = read_housing_csv(path)  # the embedded profile's reader, with its messages
        data = path.read_bytes()
    else:
        if not path.is_file():
            raise UnreadableDataError(f"{path}: no such file" if not path.exists() else f"{path}: not a regular file")
        data = path.read_bytes()
        frame = _parse(data, suffix, str(path))
    return RawData(frame, str(path), content_sha256(frame), _sha256(data))


def read_s3_object(uri: str, s3_client: Any) -> RawData:
    """``s3://bucket/key.csv`` or ``.parquet`` through ``s3_client`` (a boto3 S3 client)."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, key = uri[len("s3://"):].partition("/")
    suffix = file_format(key)
    try:
        data = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        reason = {
            "NoSuchKey": f"no object with key {key!r} in bucket {bucket!r}",
            "NoSuchBucket": f"no bucket named {bucket!r}",
            "AccessDenied": "access denied (check the credentials and the bucket policy)",
        }.get(code, f"{code}: {error}")
        raise UnreadableDataError(f"{uri}: {reason}") from None
    except BotoCoreError as error:
        raise UnreadableDataError(f"{uri}: S3 did not answer ({error})") from None
    frame = _parse(data, suffix, uri)
    return RawData(frame, uri, content_sha256(frame), _sha256(data))


def read_database(source: RawSource) -> RawData:
    """A table or a ``SELECT`` from PostgreSQL, in a read-only transaction."""
    from sqlalchemy import create_engine, inspect, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    url = make_url(source.uri)
    if url.drivername == "postgresql":  # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3, not installed
        url = url.set(drivername="postgresql+psycopg2")
    shown = url.render_as_string(hide_password=True)
    what = f"table {source.table}" if source.table else "the query in HOUSING_RAW__QUERY"
    location = f"{shown} ({what})"
    engine = create_engine(url, connect_args={"connect_timeout": 10})
    try:
        with engine.connect() as conn, conn.begin():
            conn.execute(text("SET TRANSACTION READ ONLY"))
            if source.table:
                schema, _, name = source.table.rpartition(".")
                if not inspect(conn).has_table(name, schema=schema or None):
                    raise UnreadableDataError(f"{shown}: no table named {source.table!r}")
                quote = engine.dialect.identifier_preparer.quote
                statement = f"SELECT * FROM {'.'.join(quote(part) for part in source.table.split('.'))}"
            else:
                statement = source.query
            frame = pd.read_sql_query(text(statement), conn)
    except SQLAlchemyError as error:
        detail = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise UnreadableDataError(f"{location}: {detail}") from None
    finally:
        engine.dispose()
    if frame.empty:
        raise UnreadableDataError(f"{location}: no rows")
    return RawData(frame, location, content_sha256(frame), None)


def read_raw_source(source: RawSource, default_path: str | Path, s3_client_factory=None) -> RawData:
    """Read ``source`` (``default_path`` when it names none); ``s3_client_factory()`` builds the S3 client."""
    kind = source.kind
    if kind is None or kind == "file":
        return read_file(source.uri.strip() or default_path)
    if kind == "s3":
        if s3_client_factory is None:
            raise UnreadableDataError(f"{source.uri}: no S3 client configured")
        return read_s3_object(source.uri.strip(), s3_client_factory())
    return read_database(source)
