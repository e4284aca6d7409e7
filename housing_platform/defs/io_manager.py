"""Asset storage without pickle, in a local folder or an S3 bucket: DataFrames as Parquet, the rest as JSON.

Dagster's default IO manager pickles every asset value. A pickle loaded from a path someone can swap is
arbitrary code execution, so this platform stores DataFrames as Parquet and dicts/lists as JSON, each
under ``<base>/<asset key path>.<parquet|json>`` (``<base>/<asset>/<partition>.<suffix>`` when
partitioned). ``<base>`` is ``<state>/storage`` in the embedded profile and ``s3://<bucket>/<prefix>``
in the production one. Model files (skops, ``.keras``) are written by the assets themselves and
referenced from their JSON values; locally, a path into the state folder (``<base>``'s parent) is stored
as ``$HOUSING_HOME/...`` and read back under wherever the state folder is now, so the folder can be
copied or moved.

One :class:`dg.UPathIOManager` serves both: UPath does the path arithmetic (keys, partitions, loading
several partitions at once) and the bytes go through the local filesystem or, for ``s3://``, through the
boto3 client of an ``S3Resource`` — like dagster-aws's own ``PickledObjectS3IOManager``, so no fsspec S3
driver is needed. Any S3 API works (AWS, MinIO, moto in the tests). Credentials come from boto3's usual
chain, never from resource config, so they do not show in the Dagster UI.
"""

# No `from __future__ import annotations`: Dagster reads the nested `S3Resource` from the evaluated
# annotation, and a postponed (string) one would hide it.
import io
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import dagster as dg
import pandas as pd
from botocore.exceptions import ClientError
from dagster_aws.s3 import S3Resource
from pydantic import Field, PrivateAttr
from upath import UPath

from housing_platform.defs.metadata import COUNT, number_metadata

PARQUET, JSON = ".parquet", ".json"
CONTENT_TYPES = {PARQUET: "application/vnd.apache.parquet", JSON: "application/json"}
MISSING_OBJECT_CODES = {"NoSuchKey", "404", "NotFound"}
STATE_FOLDER_TOKEN = "$HOUSING_HOME"  # stands for the state folder in stored JSON values (local storage)


class ParquetJsonIOManager(dg.ConfigurableIOManager, dg.UPathIOManager):
    """Stores pandas DataFrames as Parquet and JSON-serialisable values as JSON, locally or on S3."""

    base_dir: str = Field(
        description="Where asset values are stored: a folder (HOUSING_HOME/storage) or s3://bucket/prefix "
        "(HOUSING_S3_BUCKET, HOUSING_S3_PREFIX/storage)."
    )
    s3: S3Resource | None = Field(
        None, description="The S3 endpoint and region, for an s3:// base_dir (credentials: boto3's chain)."
    )

    _base_path: UPath = PrivateAttr()
    _bucket: str | None = PrivateAttr(None)
    _s3_client: Any = PrivateAttr(None)

    def model_post_init(self, context: Any, /) -> None:
        super().model_post_init(context)
        location = urlparse(self.base_dir)
        if location.scheme == "s3":
            if self.s3 is None:
                raise ValueError(f"base_dir {self.base_dir!r} is on S3: pass s3=S3Resource(...)")
            # A relative path of the key prefix: UPath joins the keys, boto3 moves the bytes.
            self._bucket = location.netloc
            self._base_path = UPath(location.path.strip("/") or ".")
        else:
            self._base_path = UPath(self.base_dir)

    # -- where values live -------------------------------------------------------------------------

    def value_path(self, context: dg.OutputContext | dg.InputContext) -> UPath:
        """The stored value's path without its format suffix (the same path ``load_input`` reads)."""
        path = self._base_path.joinpath(*self.get_asset_relative_path(context).parts)
        if context.has_asset_partitions:
            path = self.get_path_for_partition(context, path, context.asset_partition_key)
        return path

    def uri(self, path: UPath) -> str:
        """A location a person can paste: the file path, or ``s3://bucket/key``."""
        return f"s3://{self._bucket}/{path.as_posix()}" if self._bucket else str(path)

    # -- reading and writing values ---------------------------------------------------------------

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        # Not the base class's: it records a `path` metadata entry that would replace the asset's own
        # `path` (the skops or .keras file). A value of None (no return value) is not stored.
        if obj is not None:
            self.dump_to_path(context, obj, self.value_path(context))

    def dump_to_path(self, context: dg.OutputContext, obj: Any, path: UPath) -> None:
        if isinstance(obj, pd.DataFrame):
            suffix, stale = PARQUET, JSON
            buffer = io.BytesIO()
            obj.to_parquet(buffer, index=False)
            body = buffer.getvalue()
        else:
            suffix, stale = JSON, PARQUET
            body = encode_json_value(context, self._portable(obj, to_token=True)).encode("utf-8")
        stored = with_suffix(path, suffix)
        self.make_directory(stored.parent)
        context.log.debug(self.get_writing_output_log_message(stored))
        self.write_bytes(stored, body, CONTENT_TYPES[suffix])
        # Loading prefers Parquet, so a value that changed from a DataFrame to JSON must not leave its
        # old Parquet file behind to be read instead (and the other way round).
        self.unlink(with_suffix(path, stale))
        context.add_output_metadata(
            {"storage_path": dg.MetadataValue.path(self.uri(stored)), **number_metadata("stored_bytes", len(body), COUNT)}
        )

    def load_from_path(self, context: dg.InputContext, path: UPath) -> Any:
        parquet, as_json = with_suffix(path, PARQUET), with_suffix(path, JSON)
        body = self.read_bytes(parquet)
        if body is not None:
            return pd.read_parquet(io.BytesIO(body))
        body = self.read_bytes(as_json)
        if body is not None:
            return self._portable(json.loads(body), to_token=False)
        raise FileNotFoundError(
            f"No stored value for {context.asset_key.to_user_string()} at {self.uri(parquet)} or "
            f"{self.uri(as_json)}: materialize it first"
        )

    def _portable(self, value: Any, *, to_token: bool) -> Any:
        """``value`` with paths into the state folder as ``$HOUSING_HOME/...`` (``to_token``) or back.

        Local storage only: ``<base_dir>``'s parent is the state folder (``HOUSING_HOME/storage``).
        """
        if self._bucket:
            return value
        home = str(Path(self.base_dir).resolve().parent) + "/"
        old, new = (home, STATE_FOLDER_TOKEN + "/") if to_token else (STATE_FOLDER_TOKEN + "/", home)
        if isinstance(value, Path):
            value = str(value)
        if isinstance(value, str):
            return new + value[len(old):] if value.startswith(old) else value
        if isinstance(value, dict):
            return {key: self._portable(item, to_token=to_token) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self._portable(item, to_token=to_token) for item in value]
        return value

    # -- the two backends --------------------------------------------------------------------------

    def _client(self) -> Any:
        if self._s3_client is None:
            self._s3_client = self.s3.get_client()
        return self._s3_client

    def write_bytes(self, path: UPath, body: bytes, content_type: str) -> None:
        if self._bucket:
            self._client().put_object(Bucket=self._bucket, Key=path.as_posix(), Body=body, ContentType=content_type)
        else:
            path.write_bytes(body)

    def read_bytes(self, path: UPath) -> bytes | None:
        """The stored bytes, or None when there is no such file or object."""
        if not self._bucket:
            return path.read_bytes() if path.is_file() else None
        try:
            return self._client().get_object(Bucket=self._bucket, Key=path.as_posix())["Body"].read()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in MISSING_OBJECT_CODES:
                return None
            raise

    def path_exists(self, path: UPath) -> bool:
        return any(self.read_bytes(with_suffix(path, suffix)) is not None for suffix in (PARQUET, JSON))

    def unlink(self, path: UPath) -> None:
        if self._bucket:
            # Deleting a missing key is not an error on S3.
            self._client().delete_object(Bucket=self._bucket, Key=path.as_posix())
        else:
            path.unlink(missing_ok=True)

    def make_directory(self, path: UPath) -> None:
        if not self._bucket:  # S3 has no directories
            path.mkdir(parents=True, exist_ok=True)


def with_suffix(path: UPath, suffix: str) -> UPath:
    """``a/b`` → ``a/b.json``; unlike ``with_suffix``, a dot already in the name is kept."""
    return path.with_name(path.name + suffix)


def encode_json_value(context: dg.OutputContext, obj: Any) -> str:
    """The JSON text stored for ``obj``; a TypeError naming the asset and the type when it is not JSON-able."""
    try:
        return json.dumps(obj, indent=2, sort_keys=True, default=_json_default)
    except TypeError as error:
        raise TypeError(
            f"{context.asset_key.to_user_string()}: value of type {type(obj).__name__} cannot be stored "
            "as JSON; return a DataFrame, or write the file yourself and return its path"
        ) from error


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
