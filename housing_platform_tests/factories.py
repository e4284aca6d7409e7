"""Tiny synthetic data for tests: districts that satisfy the schema, built from a seed."""

from __future__ import annotations

import numpy as np
import pandas as pd

from housing_platform.core.schema import ALL_COLUMNS, OCEAN_PROXIMITY_CATEGORIES, TARGET_COLUMN


def make_districts(
    rows: int = 200, seed: int = 0, *, shift: float = 0.0, missing_bedrooms_share: float = 0.0
) -> pd.DataFrame:
    """Random districts whose value depends on income and the ocean class (so models can learn).

    With ``shift = 0`` every row passes the district schema. ``shift`` scales sizes and incomes by
    ``1 + shift`` and moves places by ``shift`` degrees: a deliberately different population (which
    may leave the schema's ranges). ``missing_bedrooms_share`` blanks that share of `total_bedrooms`.
    """
    rng = np.random.default_rng(seed)
    households = rng.integers(50, 2_000, rows).astype(float) * (1 + shift)
    rooms = households * rng.uniform(3, 8, rows)
    ocean = rng.choice(OCEAN_PROXIMITY_CATEGORIES[:4], rows)
    income = rng.uniform(0.5, 15, rows).round(4) * (1 + shift)
    value = 40_000 + 25_000 * income + np.where(ocean == "INLAND", -60_000, 30_000) + rng.normal(0, 10_000, rows)
    frame = pd.DataFrame(
        {
            "longitude": rng.uniform(-124, -114.5, rows).round(2) + shift,
            "latitude": rng.uniform(32.6, 41.9, rows).round(2) - shift,
            "housing_median_age": rng.integers(1, 53, rows).astype(float),
            "total_rooms": rooms.round(),
            "total_bedrooms": (rooms * rng.uniform(0.15, 0.3, rows)).round(),
            "population": (households * rng.uniform(1.5, 4, rows)).round(),
            "households": households,
            "median_income": income,
            "ocean_proximity": ocean,
            TARGET_COLUMN: np.clip(value, 15_000, 500_001).round(),
        }
    )
    if missing_bedrooms_share:
        frame.loc[rng.random(rows) < missing_bedrooms_share, "total_bedrooms"] = np.nan
    return frame[list(ALL_COLUMNS)]
