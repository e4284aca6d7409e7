"""Evaluation: metrics overall and per slice, baselines on the same split, and diagnostic plots.

* :func:`regression_metrics` — RMSE, MAE, R², MAPE (a fraction, as in scikit-learn) and the row count.
* :func:`slice_metrics` — the same per ``ocean_proximity`` category and per ``median_income`` quintile
  (quintile edges computed on the evaluated rows themselves), each with its row count.
* :func:`baseline_predictions` — reference models scored on the same test rows as the network: the
  median value per ``ocean_proximity`` (a heuristic), a linear regression and a histogram gradient
  boosting regressor (both on the fitted transformer's features, fit on the train rows), and the
  textbook random forest (:mod:`housing_platform.core.baselines`, fit on train + validation, the rows
  the network learns from).
* :func:`write_plots` — PNG files (predicted vs. actual, residuals, per-slice RMSE), drawn with the
  matplotlib object API on the Agg canvas: no pyplot, no global backend switch, safe in servers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from housing_platform.core.metrics import METRIC_NAMES, regression_metrics
from housing_platform.core.schema import CATEGORICAL_COLUMN, OCEAN_PROXIMITY_CATEGORIES, TARGET_COLUMN

INCOME_COLUMN = "median_income"
N_INCOME_QUANTILES = 5
BASELINE_RANDOM_STATE = 42
SLICE_COLUMNS = ["slice_by", "slice", "lower", "upper", "count", *METRIC_NAMES]


def income_quantile_edges(income, quantiles: int = N_INCOME_QUANTILES) -> np.ndarray:
    """``quantiles + 1`` edges (min, the inner quantiles, max) of ``income``."""
    values = np.asarray(income, dtype=np.float64)
    return np.quantile(values, np.linspace(0.0, 1.0, quantiles + 1))


def slice_masks(frame: pd.DataFrame, quantiles: int = N_INCOME_QUANTILES) -> dict[tuple[str, str], tuple]:
    """``(slice_by, slice) -> (row mask, lower, upper)`` for every slice :func:`slice_metrics` reports, in order.

    All rows, every known ``ocean_proximity`` category (then unknown ones found in ``frame``), and each
    ``median_income`` quantile ``i``: ``edges[i] <= income < edges[i + 1]`` (the last includes its upper edge).
    """
    masks: dict[tuple[str, str], tuple] = {("all", "all"): (np.ones(len(frame), dtype=bool), np.nan, np.nan)}
    categories = frame[CATEGORICAL_COLUMN].astype(str).to_numpy()
    seen = list(OCEAN_PROXIMITY_CATEGORIES) + sorted(set(categories) - set(OCEAN_PROXIMITY_CATEGORIES))
    for category in seen:
        masks[(CATEGORICAL_COLUMN, category)] = (categories == category, np.nan, np.nan)
    if len(frame):
        income = frame[INCOME_COLUMN].to_numpy(dtype=np.float64)
        edges = income_quantile_edges(income, quantiles)
        which = np.clip(np.searchsorted(edges[1:-1], income, side="right"), 0, quantiles - 1)
        slice_by = f"{INCOME_COLUMN}_quintile" if quantiles == 5 else f"{INCOME_COLUMN}_quantile"
        for i in range(quantiles):
            label = f"Q{i + 1} [{edges[i]:.2f}, {edges[i + 1]:.2f}{']' if i == quantiles - 1 else ')'}"
            masks[(slice_by, label)] = (which == i, edges[i], edges[i + 1])
    return masks


def slice_metrics(frame: pd.DataFrame, y_true, y_pred, quantiles: int = N_INCOME_QUANTILES) -> pd.DataFrame:
    """One row for all rows, one per ``ocean_proximity`` category, one per ``median_income`` quantile.

    Columns :data:`SLICE_COLUMNS`; the slices are :func:`slice_masks`'. Every known category gets a row
    (count 0 and NaN metrics when it is absent) so the table's shape is stable.
    """
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if not len(frame) == len(y_true) == len(y_pred):
        raise ValueError("frame, y_true and y_pred must have the same number of rows")
    rows = [
        {"slice_by": by, "slice": name, "lower": float(lower), "upper": float(upper),
         **regression_metrics(y_true[mask], y_pred[mask])}
        for (by, name), (mask, lower, upper) in slice_masks(frame, quantiles).items()
    ]
    table = pd.DataFrame(rows, columns=SLICE_COLUMNS)
    table["count"] = table["count"].astype(int)
    return table


def interval_slices(frame: pd.DataFrame, y_true, lower, upper) -> pd.DataFrame:
    """Coverage and mean width of prediction intervals overall and per slice (:func:`slice_masks`)."""
    from housing_platform.core.conformal import coverage_by_slice

    masks = {key: mask for key, (mask, _, _) in slice_masks(frame).items()}
    return pd.DataFrame(coverage_by_slice(frame, y_true, lower, upper, masks))


def baseline_predictions(
    train: pd.DataFrame, test: pd.DataFrame, transformer, validation: pd.DataFrame | None = None
) -> dict[str, np.ndarray]:
    """Test-set predictions (dollars) of the baselines (``train`` and ``validation`` include the target).

    ``transformer`` is the already fitted feature pipeline (fit on the same train rows), so the linear
    and boosting baselines see exactly the network's inputs. The textbook random forest learns from
    ``train`` plus ``validation`` (the rows the network learns from, early stopping included).
    """
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import LinearRegression

    from housing_platform.core.baselines import TEXTBOOK_BASELINE, textbook_predictions
    from housing_platform.core.features import transform

    y_train = train[TARGET_COLUMN].to_numpy(dtype=np.float64)
    medians = train.groupby(CATEGORICAL_COLUMN)[TARGET_COLUMN].median()
    heuristic = test[CATEGORICAL_COLUMN].map(medians).fillna(float(np.median(y_train)))

    X_train, X_test = transform(transformer, train, out_of_fold=True), transform(transformer, test)
    linear = LinearRegression().fit(X_train, y_train)
    boosting = HistGradientBoostingRegressor(random_state=BASELINE_RANDOM_STATE).fit(X_train, y_train)
    return {
        "median_per_ocean_proximity": heuristic.to_numpy(dtype=np.float64),
        "linear_regression": linear.predict(X_test).astype(np.float64),
        "hist_gradient_boosting": boosting.predict(X_test).astype(np.float64),
        TEXTBOOK_BASELINE: textbook_predictions(pd.concat([train, validation], ignore_index=True)
                                                if validation is not None else train, test),
    }


def _figure(width: float = 6.4, height: float = 4.8):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def write_plots(
    y_true, y_pred, folder: str | Path, slices: pd.DataFrame | None = None, title: str = "model"
) -> dict[str, Path]:
    """Write ``predicted_vs_actual.png``, ``residuals.png`` and (with ``slices``) ``slice_errors.png``.

    ``slices`` is a :func:`slice_metrics` table. Returns ``{plot name: path}``.
    """
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    rmse = regression_metrics(y_true, y_pred)["rmse"]

    figure = _figure(6, 6)
    axes = figure.add_subplot()
    axes.scatter(y_true, y_pred, s=4, alpha=0.3, color="tab:blue", linewidths=0)
    high = float(max(y_true.max(initial=0), y_pred.max(initial=0)))
    axes.plot([0, high], [0, high], color="black", linewidth=1, label="perfect")
    axes.set(
        xlabel="actual median house value (USD)",
        ylabel="predicted (USD)",
        title=f"{title}: predicted vs. actual (RMSE ${rmse:,.0f}, n={y_true.size:,})",
    )
    axes.legend(loc="upper left")
    paths["predicted_vs_actual"] = folder / "predicted_vs_actual.png"
    figure.savefig(paths["predicted_vs_actual"])

    figure = _figure(10, 4.5)
    residual = y_pred - y_true
    left, right = figure.subplots(1, 2)
    left.scatter(y_pred, residual, s=4, alpha=0.3, color="tab:orange", linewidths=0)
    left.axhline(0, color="black", linewidth=1)
    left.set(xlabel="predicted (USD)", ylabel="residual = predicted - actual (USD)", title="residuals vs. predicted")
    right.hist(residual, bins=60, color="tab:orange")
    right.axvline(0, color="black", linewidth=1)
    right.set(xlabel="residual (USD)", ylabel="rows", title=f"residuals (mean ${residual.mean():,.0f})")
    paths["residuals"] = folder / "residuals.png"
    figure.savefig(paths["residuals"])

    if slices is not None and len(slices):
        shown = slices[(slices["slice_by"] != "all") & (slices["count"] > 0)]
        figure = _figure(10, 5)
        axes = figure.add_subplot()
        labels = [f"{s}\n(n={c:,})" for s, c in zip(shown["slice"], shown["count"])]
        colours = ["tab:green" if by == CATEGORICAL_COLUMN else "tab:purple" for by in shown["slice_by"]]
        axes.bar(range(len(shown)), shown["rmse"], color=colours)
        axes.axhline(rmse, color="black", linewidth=1, linestyle="--", label=f"overall RMSE ${rmse:,.0f}")
        axes.set_xticks(range(len(shown)), labels, fontsize=7, rotation=30, ha="right")
        axes.set(ylabel="RMSE (USD)", title=f"{title}: RMSE per ocean_proximity (green) and income quintile (purple)")
        axes.legend()
        paths["slice_errors"] = folder / "slice_errors.png"
        figure.savefig(paths["slice_errors"])
    return paths


def write_loss_curves(history: dict[str, list[float]], folder: str | Path) -> Path:
    """``loss_curves.png``: training and validation loss per epoch (log scale), and validation RMSE."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    figure = _figure(10, 4.5)
    left, right = figure.subplots(1, 2)
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    for key, colour in (("loss", "tab:blue"), ("val_loss", "tab:orange")):
        if key in history:
            left.plot(epochs, history[key], label=key, color=colour)
    left.set(xlabel="epoch", ylabel="MSE on the transformed target", yscale="log", title="loss per epoch")
    left.legend()
    if "val_rmse" in history:
        right.plot(epochs, history["val_rmse"], color="tab:green")
        best = int(np.argmin(history["val_rmse"]))
        right.axvline(best + 1, color="black", linewidth=1, linestyle="--",
                      label=f"best ${history['val_rmse'][best]:,.0f} (epoch {best + 1})")
        right.legend()
    right.set(xlabel="epoch", ylabel="USD", title="validation RMSE per epoch")
    path = folder / "loss_curves.png"
    figure.savefig(path)
    return path
