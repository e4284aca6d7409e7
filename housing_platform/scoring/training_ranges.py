"""Training-range flags: which features of a row lie outside what a model version was trained on.

A version records the train minimum and maximum of each numeric feature and the categories it saw
(its ``feature_ranges``). Rows outside them are still scored — they pass the schema's rules — but
flagged, so the API and batch output can say which predictions are extrapolations. Missing values
are not flagged. Used by :meth:`housing_platform.scoring.scorer.FastScorer.out_of_range`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from housing_platform.core.schema import CATEGORICAL_COLUMN, NUMERIC_FEATURE_COLUMNS


def compile_ranges(feature_ranges: dict) -> tuple:
    """(numeric column positions, lows, highs, known categories or None) from feature_ranges JSON."""
    positions, lows, highs = [], [], []
    for j, name in enumerate(NUMERIC_FEATURE_COLUMNS):
        spec = feature_ranges.get(name)
        if spec and "min" in spec and "max" in spec:
            positions.append(j)
            lows.append(float(spec["min"]))
            highs.append(float(spec["max"]))
    categories = feature_ranges.get(CATEGORICAL_COLUMN, {}).get("categories")
    known = frozenset(categories) if categories else None
    return np.array(positions, dtype=np.intp), np.array(lows), np.array(highs), known


def flag_matrix(ranges: tuple, numeric: np.ndarray, categories) -> tuple[list[str], np.ndarray] | None:
    """(flagged column names, (n, names) boolean matrix) for :func:`compile_ranges` output; None if nothing to check."""
    positions, lows, highs, known = ranges
    names = [NUMERIC_FEATURE_COLUMNS[j] for j in positions]
    parts = []
    if len(positions):
        values = numeric[:, positions]
        parts.append((values < lows) | (values > highs))  # NaN compares False: missing is not flagged
    if known is not None and categories is not None:
        if len(numeric) <= 64:
            unseen = np.fromiter((v not in known for v in categories), dtype=bool, count=len(numeric))
        else:
            unseen = ~pd.Series(categories, dtype=object).isin(list(known)).to_numpy()
        parts.append(unseen[:, None])
        names.append(CATEGORICAL_COLUMN)
    if not parts:
        return None
    return names, np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
