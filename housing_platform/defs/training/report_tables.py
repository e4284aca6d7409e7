"""Tables of the evaluation report for people: candidate vs. baselines vs. champion, and the intervals."""

import dagster as dg
import pandas as pd

from housing_platform.core.metrics import METRIC_NAMES
from housing_platform.defs.metadata import markdown_table

__all__ = ["comparison_table", "interval_metadata"]


def interval_metadata(intervals: dict) -> dict:
    """The report's prediction intervals for people: coverage and mean width on the test split, per slice."""
    overall, level = intervals["overall"], intervals["calibration"]["level"]
    table = pd.DataFrame(intervals["slices"])
    return {
        "interval_level": dg.MetadataValue.float(level),
        "interval_coverage": dg.MetadataValue.float(overall["coverage"]),
        "interval_mean_width": dg.MetadataValue.float(overall["mean_width"]),
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
