"""Where ``raw_housing_data`` reads the districts: a local file, an S3 object or a PostgreSQL table.

Teams keep their raw data where it already is. One setting (``HOUSING_RAW__URI``, a field of
:class:`~housing_platform.config.settings.HousingSettings`) names it:

* a local ``.csv`` or ``.parquet`` path (or nothing: the file ``HOUSING_DATA_PATH`` names);
* an ``s3://bucket/key.csv`` or ``.parquet`` URI, read through boto3 (endpoint and credentials
  from the S3 settings of the profile or boto3's own chain);
* a PostgreSQL SQLAlchemy URL with ``HOUSING_RAW__TABLE`` (``name`` or ``schema.name``) or
  ``HOUSING_RAW__QUERY`` (a ``SELECT``, run in a read-only transaction).

The rules are checked when the settings are read, so a typo fails at load time naming the variable,
not in the middle of a run. Plain pydantic: nothing here connects to anything
(``adapters/raw_sources.py`` reads).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

RAW_URI_ENV = "HOUSING_RAW__URI"
RAW_TABLE_ENV = "HOUSING_RAW__TABLE"
RAW_QUERY_ENV = "HOUSING_RAW__QUERY"
FILE_FORMATS = (".csv", ".parquet")
# A table name, optionally schema-qualified: identifiers only, so it can be quoted safely.
TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
DATABASE_SCHEMES = ("postgresql",)
RawKind = Literal["file", "s3", "database"]


class RawSourceError(ValueError):
    """The raw-source settings break a rule; the message names the variable, the rule and the value."""


def file_format(location: str) -> str:
    """``.csv`` or ``.parquet`` from a path or key; :class:`RawSourceError` for anything else."""
    suffix = PurePosixPath(location).suffix.lower()
    if suffix not in FILE_FORMATS:
        raise RawSourceError(
            f"{RAW_URI_ENV} must end in {' or '.join(FILE_FORMATS)} for a file or S3 object; got {location!r}"
        )
    return suffix


class RawSource(BaseModel):
    """Where ``raw_housing_data`` reads (one variable per field: ``HOUSING_RAW__<FIELD>``)."""

    model_config = ConfigDict(frozen=True)

    uri: str = Field(
        "", description="a local `.csv`/`.parquet` path, an `s3://bucket/key.csv` (or `.parquet`) URI, or a "
        "PostgreSQL SQLAlchemy URL without password (`PGPASSWORD`); empty: the file `HOUSING_DATA_PATH` names",
    )
    table: str = Field("", description="with a database URL: the table to read, `name` or `schema.name`")
    query: str = Field(
        "", description="with a database URL, instead of a table: a `SELECT` run in a read-only transaction "
        "(add `ORDER BY` for a row order, and so a data version, that does not depend on the database)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> RawSource:
        self.validate_rules()
        return self

    @property
    def kind(self) -> RawKind | None:
        """None when unset (the data file of ``HOUSING_DATA_PATH`` is read)."""
        uri = self.uri.strip()
        if not uri:
            return None
        if uri.lower().startswith("s3://"):
            return "s3"
        scheme = uri.split(":", 1)[0].split("+", 1)[0].lower() if "://" in uri else ""
        return "database" if scheme in DATABASE_SCHEMES else "file"

    def validate_rules(self) -> None:
        kind = self.kind
        if kind != "database" and (self.table or self.query):
            raise RawSourceError(
                f"{RAW_TABLE_ENV} / {RAW_QUERY_ENV} need a PostgreSQL URL in {RAW_URI_ENV}; got {self.uri!r}"
            )
        if kind == "file":
            if "://" in self.uri and not self.uri.lower().startswith("file://"):
                raise RawSourceError(
                    f"{RAW_URI_ENV} must be a local path, an s3:// URI or a postgresql:// URL; got {self.uri!r}"
                )
            file_format(self.uri)
        elif kind == "s3":
            bucket, _, key = self.uri[len("s3://"):].partition("/")
            if not bucket or not key:
                raise RawSourceError(f"{RAW_URI_ENV} must be s3://<bucket>/<key>; got {self.uri!r}")
            file_format(key)
        elif kind == "database":
            try:
                url = make_url(self.uri)
            except ArgumentError:
                raise RawSourceError(f"{RAW_URI_ENV} is not a SQLAlchemy URL; got {self.uri!r}") from None
            shown = url.render_as_string(hide_password=True)
            if url.password is not None:
                raise RawSourceError(
                    f"{RAW_URI_ENV} must not contain a password (it would show in the Dagster UI); set PGPASSWORD; "
                    f"got {shown!r}"
                )
            if not url.database:
                raise RawSourceError(f"{RAW_URI_ENV} must name a database; got {shown!r}")
            if bool(self.table) == bool(self.query.strip()):
                raise RawSourceError(
                    f"a database source needs exactly one of {RAW_TABLE_ENV} and {RAW_QUERY_ENV}; "
                    f"got table={self.table!r}, query={'set' if self.query.strip() else 'unset'}"
                )
            if self.table and not TABLE_NAME.match(self.table):
                raise RawSourceError(
                    f"{RAW_TABLE_ENV} must be a table name, `name` or `schema.name` (letters, digits, _); "
                    f"got {self.table!r}"
                )
