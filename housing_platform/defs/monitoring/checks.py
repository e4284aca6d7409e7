"""The two monitoring checks the `retrain_on_drift` sensor watches, evaluated per day.

`drift_report` and `live_model_performance` evaluate them in the same step as the asset (check specs),
partitioned like the assets so the UI and the sensor can say which day drifted. Neither is blocking: a
failure does not stop the run; it launches retraining through the sensor. Descriptions are formatted
from the run-config defaults, so they state the limits the code applies.
"""

import dagster as dg

from housing_platform.core.drift_verdict import CHECK_NAME
from housing_platform.core.live_quality import QualityLimits
from housing_platform.defs.monitoring.config import DriftReportConfig, LivePerformanceConfig
from housing_platform.defs.monitoring.partitions import daily_partitions

DRIFT_ASSET = "drift_report"
QUALITY_ASSET = "live_model_performance"
DRIFT_CHECK = CHECK_NAME  # "no_feature_drift", named where the verdict is worded (core.drift_verdict)
QUALITY_CHECK = "no_quality_degradation"
# What the sensor watches: failures of these launch `retraining_job`.
WATCHED_CHECKS = (
    dg.AssetCheckKey(dg.AssetKey(DRIFT_ASSET), DRIFT_CHECK),
    dg.AssetCheckKey(dg.AssetKey(QUALITY_ASSET), QUALITY_CHECK),
)


def drift_check_description(defaults: DriftReportConfig | None = None) -> str:
    """What fails `no_feature_drift`, stated with the run-config defaults (see `core.drift_rules`)."""
    defaults = defaults or DriftReportConfig()
    rules = [
        f"dataset drift (share of drifted features ≥ {defaults.drift_share:g})",
        f"drift in a key feature ({', '.join(defaults.key_features)})",
    ]
    if defaults.severe_drift_multiple is not None:
        rules.append(f"severe drift of any single feature (score ≥ {defaults.severe_drift_multiple:g}× its threshold)")
    if defaults.fail_on_prediction_drift:
        rules.append("drift of the prediction")
    return (
        f"Fails on {', '.join(rules[:-1])} or {rules[-1]}; the description and `rules_fired` name the rules "
        "that fired. Passes with 'insufficient data' on a quiet day. The `retrain_on_drift` sensor launches "
        "retraining when it fails."
    )


def drift_check_spec(defaults: DriftReportConfig | None = None) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        DRIFT_CHECK, asset=DRIFT_ASSET, partitions_def=daily_partitions, description=drift_check_description(defaults)
    )


def quality_check_spec(defaults: LivePerformanceConfig | None = None) -> dg.AssetCheckSpec:
    defaults = defaults or LivePerformanceConfig()
    return dg.AssetCheckSpec(
        QUALITY_CHECK,
        asset=QUALITY_ASSET,
        partitions_def=daily_partitions,
        description="Fails when a model version's RMSE on labelled traffic exceeds its evaluation RMSE by more "
        f"than {defaults.tolerance:.0%} (configurable), judged only with at least {defaults.min_labelled_rows:,} "
        "labelled rows. Counted robustly: labels winsorised to the schema range, residuals clipped at "
        f"{QualityLimits().residual_clip_multiple:g}× the evaluation RMSE, so one absurd label cannot fail it.",
    )
