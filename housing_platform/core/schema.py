"""The column specification of a California housing district: the single source of truth.

``HousingDistricts`` is a pandera ``DataFrameModel``. Training data is validated against it, and the
serving package derives its request validation from the same model (see :func:`column_rules`), so a
rule changed here changes everywhere. Units and meanings are documented in ``data/README.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandera.pandas as pa
from pandera.typing import Series

TARGET_COLUMN = "median_house_value"
CATEGORICAL_COLUMN = "ocean_proximity"
OCEAN_PROXIMITY_CATEGORIES = ("<1H OCEAN", "INLAND", "NEAR OCEAN", "NEAR BAY", "ISLAND")
NUMERIC_FEATURE_COLUMNS = (
    "longitude",
    "latitude",
    "housing_median_age",
    "total_rooms",
    "total_bedrooms",
    "population",
    "households",
    "median_income",
)
FEATURE_COLUMNS = (*NUMERIC_FEATURE_COLUMNS, CATEGORICAL_COLUMN)
ALL_COLUMNS = (*FEATURE_COLUMNS, TARGET_COLUMN)

# California's bounding box, a little padded (degrees).
CALIFORNIA_LONGITUDE = (-124.5, -114.0)
CALIFORNIA_LATITUDE = (32.5, 42.1)
# The census survey tops the median age at 52 and the median value at 500,001: values above are
# physically possible but never occur in the data the model is trained on.
MAX_MEDIAN_INCOME = 16.0  # tens of thousands of dollars; the survey caps at 15.0001
MIN_HOUSE_VALUE, MAX_HOUSE_VALUE = 10_000.0, 500_001.0

# The first district of the dataset (Berkeley hills, NEAR BAY): the example in the API docs and tests.
EXAMPLE_DISTRICT = {
    "longitude": -122.23,
    "latitude": 37.88,
    "housing_median_age": 41.0,
    "total_rooms": 880.0,
    "total_bedrooms": 129.0,
    "population": 322.0,
    "households": 126.0,
    "median_income": 8.3252,
    "ocean_proximity": "NEAR BAY",
}

# Share of nulls each column may have before the `null_share_within_allowance` check fails.
NULL_ALLOWANCE = {column: 0.0 for column in ALL_COLUMNS} | {"total_bedrooms": 0.05}


class HousingDistricts(pa.DataFrameModel):
    """One row per census block group ("district") of the 1990 California census."""

    longitude: Series[float] = pa.Field(
        ge=CALIFORNIA_LONGITUDE[0], le=CALIFORNIA_LONGITUDE[1], description="Degrees east (negative = west)."
    )
    latitude: Series[float] = pa.Field(
        ge=CALIFORNIA_LATITUDE[0], le=CALIFORNIA_LATITUDE[1], description="Degrees north."
    )
    housing_median_age: Series[float] = pa.Field(gt=0, le=100, description="Median age of houses, years.")
    total_rooms: Series[float] = pa.Field(gt=0, description="Rooms in the district, count.")
    total_bedrooms: Series[float] = pa.Field(
        gt=0, nullable=True, description="Bedrooms in the district, count; 207 are missing in the source."
    )
    population: Series[float] = pa.Field(gt=0, description="People living in the district, count.")
    households: Series[float] = pa.Field(gt=0, description="Households in the district, count.")
    median_income: Series[float] = pa.Field(
        gt=0, lt=MAX_MEDIAN_INCOME, description="Median household income, tens of thousands of USD."
    )
    ocean_proximity: Series[str] = pa.Field(
        isin=list(OCEAN_PROXIMITY_CATEGORIES), description="Distance class to the ocean."
    )
    median_house_value: Series[float] = pa.Field(
        ge=MIN_HOUSE_VALUE, le=MAX_HOUSE_VALUE, description="Median house value, USD (the target)."
    )

    @pa.dataframe_check(name="total_bedrooms <= total_rooms")
    def bedrooms_within_rooms(cls, df):  # noqa: N805 - pandera passes the model class
        return df["total_bedrooms"].isna() | (df["total_bedrooms"] <= df["total_rooms"])

    @pa.dataframe_check(name="households <= population")
    def households_within_population(cls, df):  # noqa: N805
        return df["households"] <= df["population"]

    class Config:
        name = "HousingDistricts"
        coerce = True
        strict = False  # extra columns are dropped by the validator with a note, not a failure


@dataclass(frozen=True)
class ColumnRule:
    """One column's rules in a form both pandas-free validators (the API) and humans can read."""

    name: str
    kind: str  # "number" or "category"
    nullable: bool
    description: str
    minimum: float | None = None
    minimum_inclusive: bool = True
    maximum: float | None = None
    maximum_inclusive: bool = True
    allowed: tuple[str, ...] | None = None

    def describe_range(self) -> str:
        low = "" if self.minimum is None else f"{'>=' if self.minimum_inclusive else '>'} {self.minimum:g}"
        high = "" if self.maximum is None else f"{'<=' if self.maximum_inclusive else '<'} {self.maximum:g}"
        return " and ".join(part for part in (low, high) if part)


# pandera check name -> (which bound it sets, inclusive?)
_BOUND_CHECKS = {
    "greater_than": ("minimum", False),
    "greater_than_or_equal_to": ("minimum", True),
    "less_than": ("maximum", False),
    "less_than_or_equal_to": ("maximum", True),
}


def column_rules(include_target: bool = False) -> dict[str, ColumnRule]:
    """Read the per-column rules back out of the pandera model (no second copy of the numbers)."""
    schema = HousingDistricts.to_schema()
    rules: dict[str, ColumnRule] = {}
    for name, column in schema.columns.items():
        if name == TARGET_COLUMN and not include_target:
            continue
        fields: dict = {}
        for check in column.checks:
            if check.name in _BOUND_CHECKS:
                bound, inclusive = _BOUND_CHECKS[check.name]
                stats = check.statistics
                fields[bound] = float(stats.get("min_value", stats.get("max_value")))
                fields[f"{bound}_inclusive"] = inclusive
            elif check.name == "isin":
                fields["allowed"] = tuple(check.statistics["allowed_values"])
        rules[name] = ColumnRule(
            name=name,
            kind="category" if "allowed" in fields else "number",
            nullable=bool(column.nullable),
            description=column.description or "",
            **fields,
        )
    return rules
