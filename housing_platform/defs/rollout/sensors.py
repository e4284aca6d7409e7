"""`rollback_on_live_quality`: the baking-window watch after every promotion, as a Dagster sensor.

Each tick judges the champion against `previous` on trusted live labels (`rollback.py`); on a rollback it
moves `champion` back (recorded on the versions as an alias event by this sensor) and reports the move as an
`alias_history` materialization, so the Dagster UI shows it beside the runs' moves. Servers follow the alias
within their poll interval.
"""

from __future__ import annotations

import dagster as dg

from housing_platform.defs.metadata import CHANGE, COUNT, DOLLARS, SCORE, number_metadata
from housing_platform.defs.resources import CaptureStoreResource, HousingStateResource, MLflowResource
from housing_platform.defs.rollout.rollback import watch_champion

ROLLBACK_SENSOR = "rollback_on_live_quality"
ALIAS_HISTORY_JOB = "alias_history_job"
alias_history_job = dg.define_asset_job(
    ALIAS_HISTORY_JOB, selection=dg.AssetSelection.assets("alias_history"),
    description="Refresh `alias_history` (champion, challenger, rollout and every alias move) after a move.",
)

# What the numbers of a decision's evidence (`core.rollout.Decision.evidence`) are; any other number is a score.
EVIDENCE_KINDS = {"rows_champion": COUNT, "rows_challenger": COUNT, "more_rows_needed": COUNT,
                  "rmse_champion": DOLLARS, "rmse_challenger": DOLLARS,
                  "difference": CHANGE, "ci_lower": CHANGE, "ci_upper": CHANGE}


def evidence_metadata(evidence: dict) -> dict:
    """``evidence_<key>`` entries: text as is, numbers for people with their raw value beside them."""
    out: dict = {}
    for key, value in evidence.items():
        if isinstance(value, bool | str):
            out[f"evidence_{key}"] = value
        elif isinstance(value, int | float):
            out.update(number_metadata(f"evidence_{key}", value, EVIDENCE_KINDS.get(key, SCORE)))
    return out


@dg.sensor(
    name=ROLLBACK_SENSOR,
    job=alias_history_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After any promotion, for `baking_hours` (core.rollout.RolloutConfig): moves `champion` back to "
    "`previous` when the new champion's live RMSE on trusted labels is worse than previous's on the same kind of "
    "rows beyond `rollback_margin` at the lower confidence bound, or its error rate or p99 latency is out of bounds.",
)
def rollback_on_live_quality(context: dg.SensorEvaluationContext, mlflow_tracking: MLflowResource,
                             capture_store: CaptureStoreResource, housing_state: HousingStateResource):
    """Roll back a champion that live labels show to be worse than the one it replaced."""
    registry = mlflow_tracking.registry()
    store = capture_store.store()
    try:
        verdict = watch_champion(registry, store, f"sensor {ROLLBACK_SENSOR}",
                                 fallback_files=housing_state.files())
    finally:
        store.dispose()
    if verdict.skipped:
        return dg.SkipReason(verdict.skipped)
    if verdict.event is None:
        return dg.SkipReason(f"keep: {verdict.decision.reason}")
    event = verdict.event
    context.log.warning(event.describe())
    metadata = {"action": event.action, "champion": event.version, "rolled_back": event.replaced or "none",
                "by": event.by, "reason": event.reason,
                **evidence_metadata(event.evidence)}
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=f"rollback {event.at}")],
                           asset_events=[dg.AssetMaterialization("alias_history", metadata=metadata)])
