"""Live monitoring computations on captured traffic: summaries and quality on labelled rows.

Plain pandas (no Dagster): the `monitoring` assets and notebooks use it. The capture store
(`housing_platform.adapters.capture.store`) already joins feedback to captures by request id; everything here works
on the frame it returns (`read_captures(..., with_feedback=True)`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from housing_platform.core.metrics import regression_metrics
from housing_platform.core.schema import FEATURE_COLUMNS, TARGET_COLUMN

PERFORMANCE_COLUMNS = [
    "model_version",
    "scored_rows",
    "labelled_rows",
    "rmse",
    "mae",
    "evaluation_rmse",
    "rmse_ratio",
]


def latency_percentiles(frame: pd.DataFrame) -> dict[str, float]:
    if frame.empty:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
    values = frame["latency_ms"].to_numpy(dtype=float)
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99)}


def out_of_range_share(frame: pd.DataFrame) -> float:
    if frame.empty:
        return 0.0
    return float((frame["out_of_range"].fillna("").astype(str) != "").mean())


def labelled(frame: pd.DataFrame) -> pd.DataFrame:
    """Captured rows whose true value came back as feedback."""
    if TARGET_COLUMN not in frame.columns:
        return frame.iloc[0:0]
    return frame[frame[TARGET_COLUMN].notna()]


def live_performance(frame: pd.DataFrame, evaluation_rmse: dict[str, float]) -> pd.DataFrame:
    """RMSE/MAE of the served predictions on labelled traffic, one row per model version.

    ``evaluation_rmse`` maps a model version to its test RMSE at evaluation time, the yardstick
    the live RMSE is compared with.
    """
    rows = []
    for version, group in frame.groupby(frame["model_version"].astype(str), sort=True):
        with_truth = labelled(group)
        scores = regression_metrics(with_truth[TARGET_COLUMN], with_truth["prediction"])
        rmse, mae = scores["rmse"], scores["mae"]
        reference = evaluation_rmse.get(version, float("nan"))
        rows.append(
            {
                "model_version": version,
                "scored_rows": len(group),
                "labelled_rows": len(with_truth),
                "rmse": rmse,
                "mae": mae,
                "evaluation_rmse": reference,
                "rmse_ratio": rmse / reference if reference and reference == reference else float("nan"),
            }
        )
    return pd.DataFrame(rows, columns=PERFORMANCE_COLUMNS)


@dataclass(frozen=True)
class QualityVerdict:
    passed: bool
    description: str
    degraded_versions: list[str]
    judged_versions: list[str]


class QualityLimits(BaseModel):
    """When live quality counts as degraded: the one home of these defaults (asset config, checks, README)."""

    tolerance: float = Field(0.15, ge=0, description="Allowed excess of live RMSE over the version's evaluation RMSE.")
    min_labelled_rows: int = Field(100, ge=1, description="Fewest labelled rows a version needs to be judged.")


def quality_verdict(
    performance: pd.DataFrame,
    tolerance: float = QualityLimits.model_fields["tolerance"].default,
    min_labelled: int = QualityLimits.model_fields["min_labelled_rows"].default,
) -> QualityVerdict:
    """Fail when a version's live RMSE exceeds its evaluation RMSE by more than ``tolerance``.

    Versions with fewer than ``min_labelled`` labelled rows are not judged: a handful of labels
    cannot tell noise from degradation.
    """
    judged = performance[performance["labelled_rows"] >= min_labelled]
    degraded = judged[judged["rmse"] > judged["evaluation_rmse"] * (1 + tolerance)]
    if judged.empty:
        labelled_total = int(performance["labelled_rows"].sum()) if len(performance) else 0
        return QualityVerdict(
            True,
            f"insufficient data: {labelled_total} labelled rows, fewer than {min_labelled} for every version",
            [],
            [],
        )
    parts = [
        f"v{r.model_version}: live RMSE ${r.rmse:,.0f} vs evaluation ${r.evaluation_rmse:,.0f} "
        f"({r.rmse_ratio - 1:+.1%}, {r.labelled_rows} labelled rows)"
        for r in judged.itertuples()
    ]
    return QualityVerdict(
        degraded.empty,
        ("quality degraded beyond " if len(degraded) else "within ") + f"+{tolerance:.0%}: " + "; ".join(parts),
        [str(v) for v in degraded["model_version"]],
        [str(v) for v in judged["model_version"]],
    )


def labelled_training_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Captured features with their fed-back targets, in the district schema's columns."""
    with_truth = labelled(frame)
    return with_truth[[*FEATURE_COLUMNS, TARGET_COLUMN]].reset_index(drop=True)
