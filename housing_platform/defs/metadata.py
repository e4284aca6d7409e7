"""Helpers that turn domain objects into Dagster metadata a person can use in the UI."""

from __future__ import annotations

import base64
from pathlib import Path

import dagster as dg
import pandas as pd

from housing_platform.core.numbers import (  # the kinds are re-exported: defs name them from here
    CHANGE,  # noqa: F401
    COUNT,
    DOLLARS,  # noqa: F401
    MILLISECONDS,  # noqa: F401
    SCORE,  # noqa: F401
    SECONDS,  # noqa: F401
    SHARE,  # noqa: F401
    for_people,
)
from housing_platform.core.schema import ALL_COLUMNS, column_rules

PREVIEW_ROWS = 10


def district_table_schema(extra_columns: dict[str, str] | None = None) -> dg.TableSchema:
    """The district columns as a Dagster TableSchema, with the pandera rules as constraints."""
    columns = []
    for name, rule in column_rules(include_target=True).items():
        other = [f"one of {', '.join(rule.allowed)}"] if rule.allowed else []
        if rule.describe_range():
            other.append(rule.describe_range())
        columns.append(
            dg.TableColumn(
                name=name,
                type="string" if rule.kind == "category" else "float64",
                description=rule.description,
                constraints=dg.TableColumnConstraints(nullable=rule.nullable, other=other),
            )
        )
    for name, type_ in (extra_columns or {}).items():
        columns.append(dg.TableColumn(name=name, type=type_))
    return dg.TableSchema(columns=columns)


def column_schema_metadata(frame: pd.DataFrame) -> dict[str, dg.MetadataValue]:
    """`dagster/column_schema` for an arbitrary frame (used where columns differ from the districts)."""
    known = set(ALL_COLUMNS)
    if known.issubset(frame.columns):
        extra = {c: str(t) for c, t in frame.dtypes.items() if c not in known}
        schema = district_table_schema(extra)
    else:
        schema = dg.TableSchema(columns=[dg.TableColumn(name=str(c), type=str(t)) for c, t in frame.dtypes.items()])
    return {
        "dagster/column_schema": dg.MetadataValue.table_schema(schema),
        "dagster/row_count": dg.MetadataValue.int(len(frame)),
    }


def markdown_table(frame: pd.DataFrame, rows: int = PREVIEW_ROWS, floatfmt: str = ",.4g") -> dg.MetadataValue:
    return dg.MetadataValue.md(frame.head(rows).to_markdown(index=False, floatfmt=floatfmt))


def png_markdown(paths: dict[str, Path]) -> dg.MetadataValue:
    """Embed PNG files in markdown so they render in the Dagster UI (which cannot read local paths)."""
    parts = []
    for title, path in paths.items():
        encoded = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        parts.append(f"### {title}\n\n![{title}](data:image/png;base64,{encoded})\n")
    return dg.MetadataValue.md("\n".join(parts))


# --- numbers for people ------------------------------------------------------------------------------------
# What a number *is* decides how a person reads it (core.numbers renders each kind once); the raw value
# stays beside it (``<key>_raw``) for tools and for Dagster's plots of numeric metadata over partitions.
RAW_SUFFIX = "_raw"


def number_metadata(key: str, value: float | int | None, kind: str) -> dict[str, dg.MetadataValue]:
    """``{key: text for people, key_raw: the number}``; the raw entry is left out when there is no number."""
    entries = {key: dg.MetadataValue.text(for_people(value, kind))}
    if value is not None and value == value:
        raw = dg.MetadataValue.int(int(value)) if kind == COUNT else dg.MetadataValue.float(float(value))
        entries[key + RAW_SUFFIX] = raw
    return entries


def numbers_metadata(entries: dict[str, tuple[float | int | None, str]]) -> dict[str, dg.MetadataValue]:
    """:func:`number_metadata` for several ``{key: (value, kind)}`` at once."""
    out: dict[str, dg.MetadataValue] = {}
    for key, (value, kind) in entries.items():
        out.update(number_metadata(key, value, kind))
    return out
