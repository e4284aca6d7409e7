"""Regression metrics of predicted against true house values, from scikit-learn, in one place.

The evaluation report (overall, per slice, baselines, champion), live quality on labelled traffic and
the training progress all report the same four numbers computed the same way.
"""

from __future__ import annotations

import numpy as np
from sklearn import metrics

METRIC_NAMES = ("rmse", "mae", "r2", "mape")


def regression_metrics(y_true, y_pred) -> dict[str, float]:
    """``rmse``, ``mae``, ``r2``, ``mape`` (fraction: 0.2 = 20 %) and ``count``; NaN where undefined.

    R² is NaN for fewer than two rows or a constant target; MAPE skips rows whose true value is 0.
    """
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} values, y_pred {y_pred.size}")
    count = int(y_true.size)
    if count == 0:
        return {"rmse": float("nan"), "mae": float("nan"), "r2": float("nan"), "mape": float("nan"), "count": 0}
    nonzero = y_true != 0
    constant = count < 2 or bool(np.all(y_true == y_true[0]))  # R² is undefined: no variance to explain
    return {
        "rmse": float(metrics.root_mean_squared_error(y_true, y_pred)),
        "mae": float(metrics.mean_absolute_error(y_true, y_pred)),
        "r2": float("nan") if constant else float(metrics.r2_score(y_true, y_pred)),
        "mape": float(metrics.mean_absolute_percentage_error(y_true[nonzero], y_pred[nonzero]))
        if nonzero.any()
        else float("nan"),
        "count": count,
    }
