"""Run config of the monitoring assets: drift thresholds, the live-quality tolerance and the history's span."""

import dagster as dg
from pydantic import Field

from housing_platform.core.drift import DriftConfig
from housing_platform.core.live_quality import QualityLimits
from housing_platform.defs.config_fields import field_from


class DriftReportConfig(dg.Config):
    """Drift thresholds; defaults come from `core.drift.DriftConfig` (Evidently's defaults)."""

    min_rows: int = field_from(
        DriftConfig, "min_rows", "Below this many captured rows the verdict is 'insufficient data'."
    )
    drift_share: float = field_from(
        DriftConfig, "drift_share", "Share of drifted features that makes the whole dataset drift."
    )
    key_features: list[str] = field_from(DriftConfig, "key_features", "Features whose drift alone fails the check.")
    max_rows: int = field_from(
        DriftConfig, "max_rows", "Larger days are compared on a seeded uniform sample of this size."
    )
    severe_drift_multiple: float | None = field_from(DriftConfig, "severe_drift_multiple")
    fail_on_prediction_drift: bool = field_from(DriftConfig, "fail_on_prediction_drift")

    def to_drift_config(self) -> DriftConfig:
        return DriftConfig(
            min_rows=self.min_rows,
            drift_share=self.drift_share,
            key_features=tuple(self.key_features),
            max_rows=self.max_rows,
            severe_drift_multiple=self.severe_drift_multiple,
            fail_on_prediction_drift=self.fail_on_prediction_drift,
        )


class LivePerformanceConfig(dg.Config):
    """When live quality counts as degraded (see `core.live_quality.quality_verdict`)."""

    tolerance: float = field_from(QualityLimits, "tolerance")
    min_labelled_rows: int = field_from(QualityLimits, "min_labelled_rows")


class DriftHistoryConfig(dg.Config):
    """How far back `drift_history` looks, and where its links to Dagster runs point."""

    days: int = Field(30, ge=1, le=366, description="Days shown, ending today (UTC).")
    dagster_ui_url: str = Field(
        "http://127.0.0.1:3000", description="Base of the links to retraining runs (the `make dev` webserver)."
    )
