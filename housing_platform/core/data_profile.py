"""A profile of the district table: what each column holds, how it is spread, and what drives the price.

Plain Python (pandas + matplotlib), no Dagster; the `housing_data_profile` asset records what these
functions return.

* :func:`column_statistics` — one row per column: count, nulls, mean, std, min, quartiles, max and
  the number of distinct values (the only statistic the categorical ``ocean_proximity`` has besides
  its counts).
* :func:`target_correlations` — Pearson and Spearman correlation of every numeric feature and every
  ``ocean_proximity`` category (as a 0/1 indicator) with ``median_house_value``.
* :func:`write_profile_plots` — three PNG files: a histogram per column, the correlations as a
  heatmap, and the districts on a longitude/latitude scatter coloured by price. Drawn with the
  matplotlib object API on the Agg canvas (as in :mod:`housing_platform.core.evaluation`): no pyplot, no
  global backend switch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

# One figure factory for the package, so every report's PNGs share size, dpi and layout rules.
from housing_platform.core.evaluation import _figure
from housing_platform.core.schema import CATEGORICAL_COLUMN, NUMERIC_FEATURE_COLUMNS, TARGET_COLUMN

STATISTICS_COLUMNS = (
    "column", "dtype", "count", "nulls", "null_share", "mean", "std", "min", "p25", "p50", "p75", "max", "distinct",
)
CORRELATION_COLUMNS = ("feature", "pearson", "spearman")
PLOT_FILES = {
    "histograms": "histograms.png",
    "target_correlation": "target_correlation.png",
    "location_price": "location_price.png",
}
HISTOGRAM_BINS = 50
SCATTER_MAX_POINTS = 50_000
SCATTER_SEED = 0


def column_statistics(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per column of ``frame``, in its order, with the columns :data:`STATISTICS_COLUMNS`.

    ``count`` is the non-null count and ``nulls`` the rest; ``distinct`` counts distinct non-null
    values. Numeric statistics (mean … max) are NaN for a non-numeric column such as
    ``ocean_proximity``.
    """
    rows = []
    for name in frame.columns:
        values = frame[name]
        count = int(values.notna().sum())
        row = {
            "column": str(name),
            "dtype": str(values.dtype),
            "count": count,
            "nulls": int(len(values) - count),
            "null_share": float((len(values) - count) / len(values)) if len(values) else float("nan"),
            "distinct": int(values.nunique(dropna=True)),
        }
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values) and count:
            numbers = values.dropna().astype(np.float64)
            quartiles = numbers.quantile([0.25, 0.5, 0.75]).to_numpy()
            row |= {
                "mean": float(numbers.mean()),
                "std": float(numbers.std()) if count > 1 else float("nan"),
                "min": float(numbers.min()),
                "p25": float(quartiles[0]),
                "p50": float(quartiles[1]),
                "p75": float(quartiles[2]),
                "max": float(numbers.max()),
            }
        rows.append(row)
    table = pd.DataFrame(rows, columns=list(STATISTICS_COLUMNS))
    return table.astype({"count": int, "nulls": int, "distinct": int}) if len(table) else table


def target_correlations(frame: pd.DataFrame, target: str = TARGET_COLUMN) -> pd.DataFrame:
    """Correlation of each numeric feature and each ``ocean_proximity = <category>`` indicator with ``target``.

    Sorted by the absolute Pearson correlation, strongest first. Rows with a null in the pair are
    left out of that pair only. Constant columns (e.g. a category absent from ``frame``) are dropped.
    """
    columns = {name: frame[name].astype(np.float64) for name in NUMERIC_FEATURE_COLUMNS if name in frame}
    if CATEGORICAL_COLUMN in frame:
        categories = frame[CATEGORICAL_COLUMN].astype("string")
        for category in sorted(categories.dropna().unique()):
            columns[f"{CATEGORICAL_COLUMN}={category}"] = (categories == category).astype(np.float64)
    y = frame[target].astype(np.float64)
    rows = []
    for name, x in columns.items():
        pair = pd.concat([x, y], axis=1).dropna()
        if len(pair) < 2 or pair.iloc[:, 0].nunique() < 2 or pair.iloc[:, 1].nunique() < 2:
            continue
        rows.append(
            {
                "feature": name,
                "pearson": float(pair.iloc[:, 0].corr(pair.iloc[:, 1], method="pearson")),
                "spearman": float(pair.iloc[:, 0].corr(pair.iloc[:, 1], method="spearman")),
            }
        )
    table = pd.DataFrame(rows, columns=list(CORRELATION_COLUMNS))
    order = table["pearson"].abs().sort_values(ascending=False, kind="stable").index
    return table.loc[order].reset_index(drop=True)


def write_histograms(frame: pd.DataFrame, path: str | Path) -> Path:
    """A grid with a histogram per numeric column and a bar chart of the ``ocean_proximity`` counts."""
    numeric = [c for c in (*NUMERIC_FEATURE_COLUMNS, TARGET_COLUMN) if c in frame]
    panels = numeric + ([CATEGORICAL_COLUMN] if CATEGORICAL_COLUMN in frame else [])
    columns = 4
    rows = max(1, -(-len(panels) // columns))
    figure = _figure(12, 2.6 * rows)
    grid = figure.subplots(rows, columns, squeeze=False).reshape(-1)
    for axes, name in zip(grid, panels):
        values = frame[name].dropna()
        if name == CATEGORICAL_COLUMN:
            counts = values.astype(str).value_counts()
            axes.bar(range(len(counts)), counts.to_numpy(), color="tab:green")
            axes.set_xticks(range(len(counts)), counts.index, fontsize=7, rotation=20, ha="right")
        else:
            colour = "tab:red" if name == TARGET_COLUMN else "tab:blue"
            axes.hist(values.astype(np.float64), bins=HISTOGRAM_BINS, color=colour)
            axes.locator_params(axis="x", nbins=5)  # long-tailed counts: keep the tick labels apart
        nulls = int(frame[name].isna().sum())
        axes.set_title(f"{name}" + (f" ({nulls:,} nulls)" if nulls else ""), fontsize=9)
        axes.set_ylabel("rows", fontsize=8)
        axes.tick_params(labelsize=7)
    for axes in grid[len(panels):]:
        axes.set_visible(False)
    figure.suptitle(f"Distribution of each column (n={len(frame):,} rows; target in red)")
    path = Path(path)
    figure.savefig(path)
    return path


def write_correlation_heatmap(correlations: pd.DataFrame, path: str | Path, target: str = TARGET_COLUMN) -> Path:
    """The :func:`target_correlations` table as a heatmap (rows: features; columns: Pearson, Spearman)."""
    values = correlations[["pearson", "spearman"]].to_numpy(dtype=np.float64)
    figure = _figure(6.5, 1.2 + 0.38 * max(len(correlations), 1))
    axes = figure.add_subplot()
    image = axes.imshow(values, cmap="RdBu_r", vmin=-1.0, vmax=1.0, aspect="auto")
    axes.set_xticks([0, 1], ["Pearson", "Spearman"])
    axes.set_yticks(range(len(correlations)), correlations["feature"], fontsize=8)
    for (i, j), value in np.ndenumerate(values):
        axes.text(j, i, f"{value:+.2f}", ha="center", va="center", fontsize=8,
                  color="white" if abs(value) > 0.5 else "black")
    axes.set_title(f"correlation with {target}", fontsize=10)
    figure.colorbar(image, ax=axes, shrink=0.8)
    path = Path(path)
    figure.savefig(path)
    return path


def write_location_scatter(frame: pd.DataFrame, path: str | Path, target: str = TARGET_COLUMN) -> Path:
    """Every district at its longitude/latitude, coloured by ``target`` (a seeded sample above 50,000 rows)."""
    shown = frame[["longitude", "latitude", target]].dropna()
    if len(shown) > SCATTER_MAX_POINTS:
        shown = shown.sample(n=SCATTER_MAX_POINTS, random_state=SCATTER_SEED)
    # Most expensive last, so the expensive districts are drawn on top of the cheap ones.
    shown = shown.sort_values(target, kind="stable")
    figure = _figure(7, 6.5)
    axes = figure.add_subplot()
    points = axes.scatter(shown["longitude"], shown["latitude"], c=shown[target], cmap="viridis", s=3,
                          alpha=0.6, linewidths=0)
    figure.colorbar(points, ax=axes, label=f"{target} (USD)")
    axes.set(xlabel="longitude (degrees)", ylabel="latitude (degrees)",
             title=f"districts by location, coloured by price (n={len(shown):,})")
    axes.set_aspect("equal", adjustable="datalim")
    path = Path(path)
    figure.savefig(path)
    return path


def write_profile_plots(frame: pd.DataFrame, folder: str | Path, correlations: pd.DataFrame | None = None) -> dict[str, Path]:
    """Write the three PNG files of :data:`PLOT_FILES` into ``folder``; returns ``{plot name: path}``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    correlations = target_correlations(frame) if correlations is None else correlations
    return {
        "histograms": write_histograms(frame, folder / PLOT_FILES["histograms"]),
        "target_correlation": write_correlation_heatmap(correlations, folder / PLOT_FILES["target_correlation"]),
        "location_price": write_location_scatter(frame, folder / PLOT_FILES["location_price"]),
    }
