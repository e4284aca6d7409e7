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
from housing_platform.core.schema import FEATURE_COLUMNS, MAX_HOUSE_VALUE, MIN_HOUSE_VALUE, TARGET_COLUMN

PERFORMANCE_COLUMNS = [
    "model_version",
    "scored_rows",
    "labelled_rows",
    "rmse",
    "mae",
    "evaluation_rmse",
    "rmse_ratio",
    "labels_outside_schema",
    "residuals_clipped",
    "interval_level",  # the version's calibrated interval level (NaN: the version has no intervals)
    "interval_coverage",  # share of labelled rows whose (winsorised) label lies in the served interval
]
# 1.4826 × MAD estimates a normal standard deviation; the clip bound when no evaluation RMSE is known.
MAD_TO_SIGMA = 1.4826


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


def robust_errors(labels, predictions, clip_dollars: float | None) -> tuple[np.ndarray, int, int]:
    """Residuals a few absurd labels cannot dominate: (residuals, labels outside the schema, residuals clipped).

    Labels are winsorised to the target's schema range first (a feedback of 1e300 counts as $500,001),
    then residuals are clipped to ±``clip_dollars`` (``None``: 1.4826 × their MAD times the default
    multiple). Honest residuals almost never reach the bound, so the RMSE of honest traffic is unchanged.
    """
    raw = np.asarray(labels, dtype=float)
    winsorised = np.clip(raw, MIN_HOUSE_VALUE, MAX_HOUSE_VALUE)
    residuals = winsorised - np.asarray(predictions, dtype=float)
    if clip_dollars is None or not np.isfinite(clip_dollars):
        spread = MAD_TO_SIGMA * float(np.median(np.abs(residuals - np.median(residuals)))) if len(residuals) else 0.0
        clip_dollars = QualityLimits().residual_clip_multiple * spread if spread > 0 else np.inf
    clipped = np.clip(residuals, -clip_dollars, clip_dollars)
    return clipped, int((winsorised != raw).sum()), int((clipped != residuals).sum())


def live_performance(
    frame: pd.DataFrame,
    evaluation_rmse: dict[str, float],
    residual_clip_multiple: float | None = None,
    calibrations: dict[str, dict] | None = None,
) -> pd.DataFrame:
    """Robust RMSE/MAE of the served predictions on labelled traffic, one row per model version.

    ``evaluation_rmse`` maps a model version to its test RMSE at evaluation time, the yardstick
    the live RMSE is compared with. Labels are winsorised to the schema range and residuals clipped
    at ``residual_clip_multiple`` × that RMSE (:func:`robust_errors`): m absurd labels among n raise
    the squared error by at most m × multiple² / n of the honest one.

    ``calibrations`` maps a model version to its interval calibration (``core.conformal``): the
    interval each labelled row was served is recomputed from its captured prediction (it depends on
    the prediction alone) and the share of labels inside it is the version's live interval coverage.
    """
    from housing_platform.core.conformal import coverage, intervals

    multiple = QualityLimits().residual_clip_multiple if residual_clip_multiple is None else residual_clip_multiple
    rows = []
    for version, group in frame.groupby(frame["model_version"].astype(str), sort=True):
        with_truth = labelled(group)
        reference = evaluation_rmse.get(version, float("nan"))
        known = bool(reference) and reference == reference
        errors, outside, clipped = robust_errors(
            with_truth[TARGET_COLUMN], with_truth["prediction"], multiple * reference if known else None
        )
        scores = regression_metrics(errors, np.zeros(len(errors)))
        rmse, mae = scores["rmse"], scores["mae"]
        calibration = (calibrations or {}).get(version)
        level = covered = float("nan")
        if calibration and len(with_truth):
            level = float(calibration["level"])
            lower, upper = intervals(with_truth["prediction"].to_numpy(dtype=float), calibration)
            truth = np.clip(with_truth[TARGET_COLUMN].to_numpy(dtype=float), MIN_HOUSE_VALUE, MAX_HOUSE_VALUE)
            covered = coverage(truth, lower, upper)["coverage"]
        rows.append(
            {
                "model_version": version,
                "scored_rows": len(group),
                "labelled_rows": len(with_truth),
                "rmse": rmse,
                "mae": mae,
                "evaluation_rmse": reference,
                "rmse_ratio": rmse / reference if known else float("nan"),
                "labels_outside_schema": outside,
                "residuals_clipped": clipped,
                "interval_level": level,
                "interval_coverage": covered,
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
    residual_clip_multiple: float = Field(
        4.0, gt=0, description="Live residuals are clipped at this multiple of the version's evaluation RMSE "
        "(labels first winsorised to the schema range), so one absurd label among n adds at most multiple²/n "
        "to the squared error."
    )
    # With n labelled rows the coverage of a well-calibrated 80% interval varies by sqrt(0.16 / n): 4% at the
    # 100 rows a version needs to be judged, so 0.10 is 2.5 standard deviations there and 5 at 400 rows.
    max_interval_coverage_gap: float = Field(
        0.10, gt=0, lt=1, description="Live coverage of the prediction intervals on labelled rows may differ from "
        "the version's calibrated level (80% by default) by at most this much; beyond it the check fails "
        "(too low: the model is surer than it should be — concept drift; too high: the ranges are needlessly wide)."
    )


def quality_verdict(
    performance: pd.DataFrame,
    tolerance: float = QualityLimits.model_fields["tolerance"].default,
    min_labelled: int = QualityLimits.model_fields["min_labelled_rows"].default,
    max_interval_coverage_gap: float = QualityLimits.model_fields["max_interval_coverage_gap"].default,
) -> QualityVerdict:
    """Fail when a version's live RMSE exceeds its evaluation RMSE by more than ``tolerance``, or its
    live interval coverage lies more than ``max_interval_coverage_gap`` from its calibrated level.

    Versions with fewer than ``min_labelled`` labelled rows are not judged: a handful of labels
    cannot tell noise from degradation.
    """
    judged = performance[performance["labelled_rows"] >= min_labelled]
    rmse_degraded = judged["rmse"] > judged["evaluation_rmse"] * (1 + tolerance)
    if "interval_coverage" in judged.columns:  # NaN (no calibration) compares False: not judged
        coverage_off = (judged["interval_coverage"] - judged["interval_level"]).abs() > max_interval_coverage_gap
    else:
        coverage_off = pd.Series(False, index=judged.index)
    degraded = judged[rmse_degraded | coverage_off]
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
        + (f", interval coverage {r.interval_coverage:.1%} vs {r.interval_level:.0%} calibrated "
           f"(allowed ±{max_interval_coverage_gap:.0%})"
           if pd.notna(getattr(r, "interval_coverage", None)) else "")
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
