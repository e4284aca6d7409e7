"""The jobs automation launches: retraining (from the sensor), monitoring and the drift history (schedules)."""

import dagster as dg

RETRAINING_JOB = "retraining_job"
MONITORING_JOB = "monitoring_job"
DRIFT_HISTORY_JOB = "drift_history_job"

# training_data → housing_splits → fitted_transformer → trained_model → evaluation_report (gate)
# → registered_model_version. The gate's blocking checks still decide whether the champion moves.
# labelled_traffic (the label gate) runs first, so a retraining learns only from labels judged now.
# The pinned golden holdout is re-verified by every retraining (it reads its pin, never the new data).
retraining_selection = (
    dg.AssetSelection.assets("training_data").downstream() & dg.AssetSelection.groups("training", "registry")
) | dg.AssetSelection.assets("labelled_traffic", "golden_holdout")
retraining_job = dg.define_asset_job(
    RETRAINING_JOB,
    selection=retraining_selection,
    description="Retrain on base + labelled live data and promote through the evaluation gate.",
    tags={"housing_platform/kind": "retraining"},
)
monitoring_job = dg.define_asset_job(
    MONITORING_JOB,
    # drift_history spans days (unpartitioned), so it has a job of its own.
    selection=dg.AssetSelection.groups("monitoring") - dg.AssetSelection.assets("drift_history"),
    description="Read a day's captures, compute drift and live quality.",
)
drift_history_job = dg.define_asset_job(
    DRIFT_HISTORY_JOB,
    selection=dg.AssetSelection.assets("drift_history"),
    description="Redraw the drift history of the last days with what followed each failed day.",
)
