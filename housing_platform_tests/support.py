"""Small helpers shared by tests of different layers (fixtures live in conftest.py).

No `from __future__ import annotations` here: Dagster reads the asset functions' annotations at runtime.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import BaseModel


@contextmanager
def changed_default(model: type[BaseModel], name: str, value) -> Iterator[None]:
    """Edit a field's default in its one home, as a developer would in the source."""
    field = model.model_fields[name]
    original = field.default
    field.default = value
    model.model_rebuild(force=True)
    try:
        yield
    finally:
        field.default = original
        model.model_rebuild(force=True)


REGIONS = dg.StaticPartitionsDefinition(["north", "south"])


def round_trip_assets(frame: pd.DataFrame) -> list[dg.AssetsDefinition]:
    """What an IO manager must store and load back: a frame, a dict of numpy scalars and paths, and
    partitioned frames and dicts (the second partitioned asset loads the first's partition back).

    Returns ``[district_frame, district_summary, regional_frame, regional_rows]``.
    """

    @dg.asset
    def district_frame() -> pd.DataFrame:
        return frame

    @dg.asset
    def district_summary() -> dict:
        # numpy scalars and paths are stored as plain JSON numbers and strings
        return {"rows": np.int64(len(frame)), "mean_value": np.float64(1.5), "source": Path("/data/d.csv")}

    @dg.asset(partitions_def=REGIONS)
    def regional_frame(context: dg.AssetExecutionContext, district_frame: pd.DataFrame) -> pd.DataFrame:
        return district_frame.head(3).assign(region=context.partition_key)

    @dg.asset(partitions_def=REGIONS)
    def regional_rows(regional_frame: pd.DataFrame) -> dict:
        return {"rows": len(regional_frame), "region": regional_frame["region"].iloc[0]}

    return [district_frame, district_summary, regional_frame, regional_rows]
