"""Run config of the rollout decision and the rollback watch; every default lives in `core.rollout.RolloutConfig`."""

import dagster as dg
from pydantic import Field

from housing_platform.core.rollout import RolloutConfig
from housing_platform.defs.config_fields import field_from

DECISION_FIELDS = ("min_labelled_rows", "non_inferiority_margin", "confidence", "power", "bootstrap_resamples",
                   "seed", "max_slice_regression", "min_slice_rows", "max_error_rate", "max_p99_latency_ratio",
                   "min_p99_latency_ms", "min_latency_requests", "max_wait_days", "rollback_margin", "baking_hours")


class ChallengerComparisonConfig(dg.Config):
    """Limits of the promote / wait / reject decision (descriptions from `RolloutConfig`)."""

    min_labelled_rows: int = field_from(RolloutConfig, "min_labelled_rows")
    non_inferiority_margin: float = field_from(RolloutConfig, "non_inferiority_margin")
    confidence: float = field_from(RolloutConfig, "confidence")
    power: float = field_from(RolloutConfig, "power")
    bootstrap_resamples: int = field_from(RolloutConfig, "bootstrap_resamples")
    seed: int = field_from(RolloutConfig, "seed")
    max_slice_regression: float = field_from(RolloutConfig, "max_slice_regression")
    min_slice_rows: int = field_from(RolloutConfig, "min_slice_rows")
    max_error_rate: float = field_from(RolloutConfig, "max_error_rate")
    max_p99_latency_ratio: float = field_from(RolloutConfig, "max_p99_latency_ratio")
    min_p99_latency_ms: float = field_from(RolloutConfig, "min_p99_latency_ms")
    min_latency_requests: int = field_from(RolloutConfig, "min_latency_requests")
    max_wait_days: float = field_from(RolloutConfig, "max_wait_days")
    rollback_margin: float = field_from(RolloutConfig, "rollback_margin")
    baking_hours: float = field_from(RolloutConfig, "baking_hours")
    trusted_labels_only: bool = Field(
        True, description="Count only labels the label gate admitted or a person approved (labelled_traffic)."
    )
    act: bool = Field(True, description="Move the aliases on promote / reject (off: decide and report only).")

    def to_rollout_config(self) -> RolloutConfig:
        return RolloutConfig(**{name: getattr(self, name) for name in DECISION_FIELDS})
