"""Asset storage on S3 for the production profile: DataFrames as Parquet, plain data as JSON, never pickle.

The S3 twin of :class:`housing_platform.defs.io_manager.ParquetJsonIOManager`: the same formats, the same
key layout below a prefix (``<prefix>/<asset key path>.parquet``, ``<prefix>/<asset>/<partition>.json``)
and the same JSON encoding and error messages, imported from ``io_managers`` so the two cannot drift.
Any S3 API works: AWS, MinIO, or moto in the tests (``S3Resource.endpoint_url``). Credentials come
from boto3's usual chain (environment, profile, instance role), never from resource config, so they
do not show in the Dagster UI.
"""

# No `from __future__ import annotations`: Dagster reads `ResourceDependency[...]` from the evaluated
# annotation, and a postponed (string) one makes pydantic reject the S3Resource passed in.
import io
import json
from pathlib import PurePosixPath
from typing import Any

import dagster as dg
import pandas as pd
from botocore.exceptions import ClientError
from dagster_aws.s3 import S3Resource
from pydantic import Field

from housing_platform.defs.io_manager import encode_json_value, value_relative_path

PARQUET, JSON = ".parquet", ".json"
CONTENT_TYPES = {PARQUET: "application/vnd.apache.parquet", JSON: "application/json"}
MISSING_OBJECT_CODES = {"NoSuchKey", "404", "NotFound"}


class S3ParquetJsonIOManager(dg.ConfigurableIOManager):
    """Stores pandas DataFrames as Parquet and JSON-serialisable values as JSON in an S3 bucket."""

    s3: dg.ResourceDependency[S3Resource]
    bucket: str = Field(description="Bucket holding the asset values (HOUSING_S3_BUCKET).")
    prefix: str = Field(
        "housing/storage", description="Key prefix below which asset values are stored (HOUSING_S3_PREFIX/storage)."
    )

    def key_for(self, context: dg.OutputContext | dg.InputContext, suffix: str) -> str:
        relative = value_relative_path(context, suffix)
        prefix = self.prefix.strip("/")
        return str(PurePosixPath(prefix) / relative) if prefix else str(relative)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        if isinstance(obj, pd.DataFrame):
            suffix, stale = PARQUET, JSON
            buffer = io.BytesIO()
            obj.to_parquet(buffer, index=False)
            body = buffer.getvalue()
        else:
            suffix, stale = JSON, PARQUET
            body = encode_json_value(context, obj).encode("utf-8")
        client = self.s3.get_client()
        key = self.key_for(context, suffix)
        client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=CONTENT_TYPES[suffix])
        # Loading prefers Parquet, so a value that changed from a DataFrame to JSON must not leave its
        # old Parquet object behind to be read instead. Deleting a missing key is not an error on S3.
        client.delete_object(Bucket=self.bucket, Key=self.key_for(context, stale))
        context.add_output_metadata(
            {"storage_path": dg.MetadataValue.path(self.uri(key)), "stored_bytes": dg.MetadataValue.int(len(body))}
        )

    def load_input(self, context: dg.InputContext) -> Any:
        client = self.s3.get_client()
        keys = [self.key_for(context, PARQUET), self.key_for(context, JSON)]
        for key in keys:
            body = self._read(client, key)
            if body is None:
                continue
            if key.endswith(PARQUET):
                return pd.read_parquet(io.BytesIO(body))
            return json.loads(body)
        raise FileNotFoundError(
            f"No stored value for {context.asset_key.to_user_string()} at {' or '.join(map(self.uri, keys))}: "
            "materialize it first"
        )

    def _read(self, client: Any, key: str) -> bytes | None:
        try:
            return client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in MISSING_OBJECT_CODES:
                return None
            raise
