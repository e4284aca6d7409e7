"""Asset storage without pickle: DataFrames as Parquet, plain data as JSON.

Dagster's default IO manager pickles every asset value into the instance folder. A pickle loaded from
a path someone can swap is arbitrary code execution, so this platform stores DataFrames as Parquet
and dicts/lists as JSON, each under ``<state>/storage/<asset key path>[/<partition>]``. Model files
(skops, ``.keras``) are written by the assets themselves and referenced from their JSON values.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field


class ParquetJsonIOManager(dg.ConfigurableIOManager):
    """Stores pandas DataFrames as Parquet and JSON-serialisable values as JSON."""

    base_dir: str = Field(description="Folder under which asset values are stored.")

    def _path(self, context: dg.OutputContext | dg.InputContext, suffix: str) -> Path:
        return Path(self.base_dir) / value_relative_path(context, suffix)

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        if isinstance(obj, pd.DataFrame):
            path, stale = self._path(context, ".parquet"), self._path(context, ".json")
            path.parent.mkdir(parents=True, exist_ok=True)
            obj.to_parquet(path, index=False)
        else:
            path, stale = self._path(context, ".json"), self._path(context, ".parquet")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(encode_json_value(context, obj))
        # A value that changed format must not be shadowed by its previous file on load.
        stale.unlink(missing_ok=True)
        context.add_output_metadata({"storage_path": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext) -> Any:
        parquet, as_json = self._path(context, ".parquet"), self._path(context, ".json")
        if parquet.exists():
            return pd.read_parquet(parquet)
        if as_json.exists():
            return json.loads(as_json.read_text())
        raise FileNotFoundError(
            f"No stored value for {context.asset_key.to_user_string()} at {parquet} or {as_json}: "
            "materialize it first"
        )


def value_relative_path(context: dg.OutputContext | dg.InputContext, suffix: str) -> PurePosixPath:
    """Where an asset value lives below the storage root, shared by the local and S3 IO managers.

    ``<key path><suffix>`` (``raw_housing_data.parquet``), or ``<key path>/<partition><suffix>`` for a
    partitioned asset.
    """
    parts = context.asset_key.path
    if context.has_asset_partitions:
        return PurePosixPath(*parts, f"{context.asset_partition_key}{suffix}")
    return PurePosixPath(*parts[:-1], parts[-1] + suffix)


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
