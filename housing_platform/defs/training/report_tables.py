"""The evaluation report for people: the comparison and interval tables and the asset's metadata."""

import dagster as dg
import pandas as pd

from housing_platform.core.baselines import TEXTBOOK_BASELINE
from housing_platform.core.metrics import METRIC_NAMES
from housing_platform.defs.metadata import (
    COUNT,
    DOLLARS,
    SCORE,
    SHARE,
    markdown_table,
    number_metadata,
    numbers_metadata,
    png_markdown,
)

__all__ = ["comparison_table", "evaluation_metadata", "interval_metadata"]


def interval_metadata(intervals: dict) -> dict:
    """The report's prediction intervals for people: coverage and mean width on the test split, per slice."""
    overall, level = intervals["overall"], intervals["calibration"]["level"]
    table = pd.DataFrame(intervals["slices"])
    return {
        **numbers_metadata({
            "interval_level": (level, SHARE),
            "interval_coverage": (overall["coverage"], SHARE),
            "interval_mean_width": (overall["mean_width"], DOLLARS),
        }),
        "interval_slices": markdown_table(table, rows=50, floatfmt=",.3f"),
    }


def comparison_table(metrics: dict, baselines: dict, champion: dict | None) -> pd.DataFrame:
    """Candidate vs. baselines vs. champion on the same test rows, best RMSE first."""
    rows = [{"model": "candidate (keras)", **metrics}]
    rows += [{"model": name, **values} for name, values in baselines.items()]
    if champion:
        rows.append({"model": f"champion v{champion['version']}", **champion["metrics"]})
    table = pd.DataFrame(rows)[["model", *METRIC_NAMES]]
    return table.sort_values("rmse", kind="stable").reset_index(drop=True)


def evaluation_metadata(report: dict, *, comparison: pd.DataFrame, slices: pd.DataFrame, verdicts: dict,
                        plots: dict, label_shift_reason: str, mlflow_run_url: str) -> dict:
    """`evaluation_report`'s metadata for people: headline numbers (raw values kept as `*_raw`), the
    comparison and slice tables, the gate's verdicts, the plots and the MLflow run."""
    metrics, baselines, champion = report["metrics"], report["baselines"], report["champion"]
    golden, intervals = report["golden_holdout"], report["intervals"]
    return {
        **numbers_metadata({
            "rmse": (metrics["rmse"], DOLLARS),
            "mae": (metrics["mae"], DOLLARS),
            "r2": (metrics["r2"], SCORE),
            "mape": (metrics["mape"], SHARE),
            "linear_baseline_rmse": (baselines["linear_regression"]["rmse"], DOLLARS),
            "textbook_baseline_rmse": (baselines[TEXTBOOK_BASELINE]["rmse"], DOLLARS),
        }),
        **(interval_metadata(intervals) if intervals else {}),
        "champion_version": champion["version"] if champion else "none",
        **number_metadata("test_rows", report["test_rows"], COUNT),
        **number_metadata("golden_rmse", golden["metrics"]["rmse"], DOLLARS),
        **(number_metadata("champion_golden_rmse", golden["champion_metrics"]["rmse"], DOLLARS)
           if golden["champion_metrics"] else {"champion_golden_rmse": "no champion"}),
        **number_metadata("golden_rows", golden["rows"], COUNT),
        "label_shift": label_shift_reason,
        "comparison": markdown_table(comparison, rows=20, floatfmt=",.3f"),
        "slices": markdown_table(slices, rows=50, floatfmt=",.3f"),
        "gate": dg.MetadataValue.md(
            "\n".join(f"- **{'PASS' if v.passed else 'REVIEW' if v.needs_review else 'FAIL'}** `{name}`: "
                      f"{v.description}" for name, v in verdicts.items())
        ),
        "plots": png_markdown({name.replace("_", " ").capitalize(): path for name, path in plots.items()}),
        "mlflow_run": dg.MetadataValue.url(mlflow_run_url),
    }
