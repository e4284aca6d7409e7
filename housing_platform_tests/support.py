"""Small helpers shared by tests of different layers (fixtures live in conftest.py).

No `from __future__ import annotations` here: Dagster reads the asset functions' annotations at runtime.
"""

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import BaseModel

from housing_platform.core.numbers import KINDS, for_people
from housing_platform.defs.metadata import RAW_SUFFIX


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


# -- numbers in metadata, as people read them ----------------------------------------------------------------
IDENTIFIER_KEYS = frozenset({"version"})  # a model version number names a version; it is not an amount
PRINTED_FLOAT = re.compile(r"-?\d*\.\d{5,}")  # a float printed whole (str(0.123456)), not rendered for people


def _number(value) -> float | int | None:
    """The number a metadata value holds (a Dagster int/float entry or a bare Python number), else None."""
    if isinstance(value, dg.IntMetadataValue | dg.FloatMetadataValue):
        return value.value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return None


def _text(value) -> str | None:
    return value.value if isinstance(value, dg.TextMetadataValue) else value if isinstance(value, str) else None


def raw_numbers(metadata: Mapping) -> dict[str, float | int]:
    """The ``<key>_raw`` numbers of ``metadata``: what a tool reads beside the text a person reads."""
    return {key: _number(value) for key, value in metadata.items()
            if key.endswith(RAW_SUFFIX) and _number(value) is not None}


def bare_numbers(metadata: Mapping) -> list[str]:
    """Keys of entries a person would read as an unformatted number.

    Allowed numbers: ``<key>_raw`` beside a text ``<key>`` that is that very number as `core.numbers`
    renders one of its kinds; Dagster's own entries (``dagster/row_count``); identifiers. A text entry that
    is a float printed with five or more decimals is bare too. JSON entries are structured data for tools
    and are not examined.
    """
    bare = []
    for key, value in metadata.items():
        text = _text(value)
        if text is not None and PRINTED_FLOAT.fullmatch(text):
            bare.append(key)
        number = _number(value)
        if number is None or key.startswith("dagster/") or key in IDENTIFIER_KEYS:
            continue
        twin = _text(metadata.get(key.removesuffix(RAW_SUFFIX))) if key.endswith(RAW_SUFFIX) else None
        if twin is None or twin not in {for_people(number, kind) for kind in KINDS}:
            bare.append(key)
    return bare
