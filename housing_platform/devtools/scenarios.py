"""Shifted traffic for the simulator and the drift tests: pure functions of held-out districts.

Each scenario draws ``rows`` districts from ``base`` (a validated table of districts the model never
trained on) with a seeded generator and then changes them in one controlled way:

* ``stable`` — a plain resample: the same distribution as ``base``. A drift check must stay quiet.
* ``income_shift`` — ``median_income`` × 1.5, clipped just below the schema's exclusive maximum
  (:data:`~housing_platform.core.schema.MAX_MEDIAN_INCOME`). Caught by feature drift on the key feature
  ``median_income`` (and by prediction drift, since income drives the price).
* ``price_inflation`` — the features are untouched and only the target ``median_house_value`` is
  × 1.3, clipped to the schema's range (at most the survey cap of 500,001). The *inputs* do not move,
  so feature drift and prediction drift **cannot** see it, by design: it is caught by live quality
  (the RMSE of the predictions against the labels that arrive later), not by
  :mod:`housing_platform.core.drift`.
* ``coastal_only`` — only ``<1H OCEAN`` / ``NEAR OCEAN`` / ``NEAR BAY`` / ``ISLAND`` districts: a
  covariate shift that moves ``ocean_proximity``, the coordinates, the house age and income at once.
  Caught as dataset drift (most features drift) and on ``median_income``.

Sampling: without replacement when ``rows <= len(pool)`` (a subset of distinct districts), with
replacement otherwise (e.g. a million rows of simulated traffic from a few thousand districts). The
output keeps every column of ``base`` (extra ones are copied as they are: recompute predictions from
the shifted features rather than shipping stale ones), gets a fresh ``RangeIndex`` and stays valid
under :class:`~housing_platform.core.schema.HousingDistricts`; ``base`` is never modified.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from housing_platform.core.schema import (
    CATEGORICAL_COLUMN,
    MAX_HOUSE_VALUE,
    MAX_MEDIAN_INCOME,
    MIN_HOUSE_VALUE,
    TARGET_COLUMN,
)

SCENARIOS = ("stable", "income_shift", "price_inflation", "coastal_only")
COASTAL_CATEGORIES = ("<1H OCEAN", "NEAR OCEAN", "NEAR BAY", "ISLAND")
INCOME_FACTOR = 1.5
PRICE_FACTOR = 1.3
# The schema requires median_income < MAX_MEDIAN_INCOME (exclusive), so shifted incomes stop just below.
MAX_SHIFTED_INCOME = MAX_MEDIAN_INCOME - 1e-4

# How each scenario is expected to be noticed (printed by benchmarks/drift.py beside what was).
EXPECTED_DETECTION = {
    "stable": "nothing (a drift alarm here is a false positive)",
    "income_shift": "feature drift on the key feature median_income, and prediction drift",
    "price_inflation": "live quality only (labels vs predictions); features and predictions do not drift",
    "coastal_only": "dataset drift (share of drifted features) and the key feature median_income",
}


def make_scenario(
    base: pd.DataFrame, scenario: str, rows: int, seed: int, *, factor: float | None = None
) -> pd.DataFrame:
    """Draw ``rows`` districts from ``base`` and apply ``scenario`` (see the module docstring).

    ``factor`` overrides the multiplier of ``income_shift`` (default 1.5) or ``price_inflation``
    (default 1.3); the other scenarios take no factor.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {', '.join(SCENARIOS)}; got {scenario!r}")
    if isinstance(rows, bool) or not isinstance(rows, (int, np.integer)) or rows < 0:
        raise ValueError(f"rows must be a non-negative integer; got {rows!r}")
    if factor is not None and scenario not in ("income_shift", "price_inflation"):
        raise ValueError(f"factor applies to income_shift and price_inflation only; got it for {scenario!r}")
    if factor is not None and not factor > 0:
        raise ValueError(f"factor must be > 0; got {factor!r}")

    pool = base
    if scenario == "coastal_only":
        pool = base[base[CATEGORICAL_COLUMN].isin(COASTAL_CATEGORIES)]
    if scenario == "price_inflation" and TARGET_COLUMN not in base.columns:
        raise ValueError(f"price_inflation changes the target, but base has no '{TARGET_COLUMN}' column")
    if len(pool) == 0 and rows > 0:
        what = "coastal districts" if scenario == "coastal_only" else "rows"
        raise ValueError(f"cannot draw {rows} rows for {scenario!r}: base has no {what}")

    rng = np.random.default_rng(seed)
    positions = rng.choice(len(pool), size=rows, replace=rows > len(pool)) if rows else np.array([], dtype=int)
    # Random order, not sorted: a simulator that streams the head of the frame must not get the
    # source file's (geographic) ordering.
    out = pool.iloc[positions].reset_index(drop=True)

    if scenario == "income_shift":
        shifted = out["median_income"].astype(float) * (factor or INCOME_FACTOR)
        out["median_income"] = shifted.clip(upper=MAX_SHIFTED_INCOME)
    elif scenario == "price_inflation":
        inflated = out[TARGET_COLUMN].astype(float) * (factor or PRICE_FACTOR)
        out[TARGET_COLUMN] = inflated.clip(lower=MIN_HOUSE_VALUE, upper=MAX_HOUSE_VALUE)
    return out
