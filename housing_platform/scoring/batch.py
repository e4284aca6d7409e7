"""Batch scoring: a file of districts in, every row back with a prediction or the rules it breaks.

:func:`read_districts` reads a CSV or Parquet file; :func:`score_frame` checks every row against the
schema's rules (:mod:`housing_platform.core.request_rules`, as the API does), scores the valid ones
through the fast path and flags values outside the version's training range, in parts on threads.
Used by ``housing-platform score`` and the serving asset group's batch-predictions asset.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from housing_platform.core.request_rules import check_rules, rejected_rules_per_row
from housing_platform.core.schema import (
    CATEGORICAL_COLUMN,
    FEATURE_COLUMNS,
    NUMERIC_FEATURE_COLUMNS,
)
from housing_platform.scoring.errors import ScoringError
from housing_platform.scoring.scorer import FastScorer, run_parts

# Batch scoring runs the dense layers in float32, as Keras does: 2-3x faster than float64, and
# held to the same per-row skew bound (error_bound.py counts its own float32 rounding). The server
# keeps float64 (one row is overhead-bound either way).
BATCH_PRECISION = "float32"
# Rows per part in score_frame: each part is checked, scored and flagged by one thread.
BATCH_PART_ROWS = 65_536

PREDICTION_COLUMN = "prediction"
LOWER_COLUMN, UPPER_COLUMN = "lower", "upper"  # the prediction interval (core/conformal.py), when calibrated
MODEL_VERSION_COLUMN = "model_version"
OUT_OF_RANGE_COLUMN = "out_of_range"
REJECTED_COLUMN = "rejected_rules"


class InputFileError(ScoringError):
    """A batch input file cannot be read or lacks feature columns."""


def read_districts(path) -> pd.DataFrame:
    """A CSV or Parquet file of districts (by suffix; ``.csv.gz`` works too)."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    try:
        frame = pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else pd.read_csv(path)
    except Exception as error:  # pandas raises many types for an unreadable file
        raise InputFileError(f"{path}: cannot be read ({type(error).__name__}: {error})") from error
    missing = [c for c in FEATURE_COLUMNS if c not in frame.columns]
    if missing:
        raise InputFileError(f"{path}: missing feature column(s): {', '.join(missing)}")
    return frame


def score_frame(scorer: FastScorer, frame: pd.DataFrame, model_version: str, threads: int | None = None) -> pd.DataFrame:
    """The input rows plus ``prediction`` (USD), ``model_version``, ``out_of_range`` and ``rejected_rules``,
    and ``lower`` / ``upper`` (the version's prediction interval, USD) when the version carries one.

    Rows breaking a schema rule are not scored (``prediction`` NaN, the rules in ``rejected_rules``);
    the others go through the fast path. Numbers that are not numbers (text in a numeric column)
    count as missing, and are then rejected by the ``not null`` rule where the schema demands a value.
    Large inputs are processed in parts of :data:`BATCH_PART_ROWS` rows — rule checks, scoring and
    training-range flags together — on ``threads`` threads (numpy releases the GIL).
    """
    n = len(frame)
    numeric = np.empty((n, len(NUMERIC_FEATURE_COLUMNS)))
    for j, name in enumerate(NUMERIC_FEATURE_COLUMNS):
        numeric[:, j] = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    categories = frame[CATEGORICAL_COLUMN].to_numpy(dtype=object)
    predictions = np.full(n, np.nan)
    flags = np.full(n, "", dtype=object)
    rejected = np.full(n, "", dtype=object)

    def run(start: int) -> None:
        part = slice(start, min(start + BATCH_PART_ROWS, n))
        part_numeric, part_categories = numeric[part], categories[part]
        violations = check_rules(part_numeric, part_categories)
        valid = np.ones(len(part_numeric), dtype=bool)
        for violation in violations:
            valid[violation.rows] = False
        if violations:
            rejected[part] = rejected_rules_per_row(violations, len(part_numeric))
        if valid.any():
            rows = np.flatnonzero(valid) if not valid.all() else slice(None)
            codes = scorer.category_codes(part_categories[rows])
            predictions[part][rows] = scorer.score_arrays(part_numeric[rows], codes)
        flags[part] = scorer.out_of_range({CATEGORICAL_COLUMN: part_categories}, numeric=part_numeric)

    threads = threads if threads is not None else min(4, os.cpu_count() or 1)
    starts = range(0, n, BATCH_PART_ROWS)
    run_parts(run, starts, threads)
    out = frame.copy(deep=False)  # new columns go to the copy only; the input columns are not duplicated
    out[PREDICTION_COLUMN] = predictions
    bounds = scorer.interval_bounds(predictions)  # NaN stays NaN for rejected rows
    if bounds is not None:
        out[LOWER_COLUMN], out[UPPER_COLUMN] = bounds
    out[MODEL_VERSION_COLUMN] = str(model_version)
    out[OUT_OF_RANGE_COLUMN] = flags
    out[REJECTED_COLUMN] = rejected
    return out
