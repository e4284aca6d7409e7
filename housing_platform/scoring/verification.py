"""Loading a registered version's fast path, and refusing it unless it scores like the pyfunc.

Equality with the registered model is a contract, not a hope: :func:`load_fast_scorer` loads the
pyfunc as any consumer would, derives its :class:`~housing_platform.scoring.scorer.FastScorer`, and
compares the two on :func:`probe_frame` rows (medians, every category, train extremes, an imputed
value). A relative difference above :data:`SKEW_RTOL` raises
:class:`~housing_platform.scoring.errors.SkewError`, so a model the port does not understand is
never served wrongly: it fails loudly at load time. The tests hold the port to the same tolerance on
the whole test split.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from housing_platform.core.schema import (
    CATEGORICAL_COLUMN,
    FEATURE_COLUMNS,
    NUMERIC_FEATURE_COLUMNS,
)
from housing_platform.scoring.errors import ScoringError, SkewError
from housing_platform.scoring.scorer import FastScorer

# The fast path and the registered model may differ by this much, relatively, on any row.
SKEW_RTOL = 1e-5


def probe_frame(scorer: FastScorer) -> pd.DataFrame:
    """Rows to compare the fast path with the registered model on at load time.

    Train medians with every category, the train minimum and maximum of each numeric feature (when
    the version recorded them), and one row with a missing ``total_bedrooms`` (imputation).
    """
    base = dict(zip(NUMERIC_FEATURE_COLUMNS, scorer.imputer_medians.tolist()))
    rows = [{**base, CATEGORICAL_COLUMN: c} for c in scorer.categories]
    for bound in ("min", "max"):
        row = dict(base)
        for name in NUMERIC_FEATURE_COLUMNS:
            spec = scorer.feature_ranges.get(name) or {}
            if bound in spec:
                row[name] = float(spec[bound])
        rows.append({**row, CATEGORICAL_COLUMN: scorer.categories[0]})
    rows.append({**base, "total_bedrooms": np.nan, CATEGORICAL_COLUMN: scorer.categories[-1]})
    return pd.DataFrame(rows, columns=list(FEATURE_COLUMNS))


def verify_against(scorer: FastScorer, python_model, frame: pd.DataFrame | None = None, rtol: float = SKEW_RTOL) -> float:
    """Largest relative difference between the fast path and ``python_model.predict``; SkewError above ``rtol``."""
    frame = probe_frame(scorer) if frame is None else frame
    expected = np.asarray(python_model.predict(None, frame), dtype=np.float64).reshape(-1)
    actual = scorer.score(frame)
    worst = relative_difference(actual, expected)
    if not worst <= rtol:
        raise SkewError(
            f"the fast path differs from the registered model by {worst:.3g} (relative) on probe rows, above {rtol:g}"
        )
    return worst


def relative_difference(actual: np.ndarray, expected: np.ndarray) -> float:
    """max |a - e| / |e| (NaN on either side counts as an infinite difference unless both are NaN)."""
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        return math.inf
    both_nan = np.isnan(actual) & np.isnan(expected)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(actual - expected) / np.maximum(np.abs(expected), np.finfo(np.float64).tiny)
    rel = np.where(both_nan, 0.0, np.where(np.isnan(rel), np.inf, rel))
    return float(rel.max(initial=0.0))


def load_fast_scorer(model_uri: str, *, verify: bool = True, precision: str = "float64") -> FastScorer:
    """Load a registered version (a concrete ``models:/name/N`` URI) and derive its fast path.

    The pyfunc is loaded exactly as any consumer would (``mlflow.pyfunc.load_model``), its python
    model unwrapped and read into a :class:`FastScorer`; with ``verify`` (the default) the two are
    compared on :func:`probe_frame` rows and a :class:`SkewError` raised if they disagree.
    """
    import mlflow

    try:
        pyfunc = mlflow.pyfunc.load_model(model_uri)
    except Exception as error:  # MLflow raises several types for a missing or unreadable model
        raise ScoringError(f"cannot load {model_uri}: {type(error).__name__}: {error}") from error
    python_model = pyfunc.unwrap_python_model()
    scorer = FastScorer.from_python_model(python_model, precision=precision)
    if verify:
        verify_against(scorer, python_model)
    return scorer
