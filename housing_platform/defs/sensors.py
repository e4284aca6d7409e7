"""Automation: retrain when monitoring checks fail, and refresh today's monitoring every hour.

Dagster has no "run when a check fails": a failed check does not fail its run, so run-failure
sensors never see it (dagster-io/dagster#29896), and blocking checks only stop downstream work inside
one run (#25112). `retrain_on_drift` closes that gap by reading the latest evaluations of the two
monitoring checks from the instance. Each evaluation has an increasing storage id, which is the
cursor: a failure triggers at most once.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import dagster as dg
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from housing_platform.defs.monitoring.assets import DRIFT_CHECK, QUALITY_CHECK

RETRAINING_JOB = "retraining_job"
MONITORING_JOB = "monitoring_job"
WATCHED_CHECKS = (
    dg.AssetCheckKey(dg.AssetKey("drift_report"), DRIFT_CHECK),
    dg.AssetCheckKey(dg.AssetKey("live_model_performance"), QUALITY_CHECK),
)
ACTIVE_RUN_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
HISTORY_PER_TICK = 50

# training_data → housing_splits → fitted_transformer → trained_model → evaluation_report (gate)
# → registered_model_version. The gate's blocking checks still decide whether the champion moves.
retraining_selection = dg.AssetSelection.assets("training_data").downstream() & dg.AssetSelection.groups(
    "training", "registry"
)
retraining_job = dg.define_asset_job(
    RETRAINING_JOB,
    selection=retraining_selection,
    description="Retrain on base + labelled live data and promote through the evaluation gate.",
    tags={"housing_platform/kind": "retraining"},
)
monitoring_job = dg.define_asset_job(
    MONITORING_JOB,
    selection=dg.AssetSelection.groups("monitoring"),
    description="Read a day's captures, compute drift and live quality.",
)


def _load_cursor(cursor: str | None) -> dict[str, int]:
    return json.loads(cursor) if cursor else {}


def new_check_failures(instance: dg.DagsterInstance, cursor: dict[str, int]) -> tuple[list[dict], dict[str, int]]:
    """Failed evaluations of the watched checks newer than ``cursor``; and the advanced cursor."""
    failures, advanced = [], dict(cursor)
    for key in WATCHED_CHECKS:
        name = key.to_user_string()
        seen = cursor.get(name, 0)
        records = instance.event_log_storage.get_asset_check_execution_history(key, limit=HISTORY_PER_TICK)
        for record in records:
            if record.id <= seen:
                continue
            advanced[name] = max(advanced.get(name, 0), record.id)
            evaluation = record.event.asset_check_evaluation if record.event else None
            if record.status == AssetCheckExecutionRecordStatus.FAILED and evaluation is not None:
                failures.append(
                    {
                        "check": name,
                        "partition": record.partition or evaluation.partition,
                        "record_id": record.id,
                        "run_id": record.run_id,
                        "description": evaluation.description or "",
                        "metadata": {k: str(v.value) for k, v in evaluation.metadata.items()},
                    }
                )
    failures.sort(key=lambda failure: failure["record_id"])
    return failures, advanced


def retraining_in_progress(instance: dg.DagsterInstance) -> bool:
    runs = instance.get_run_records(
        dg.RunsFilter(job_name=RETRAINING_JOB, statuses=ACTIVE_RUN_STATUSES), limit=1
    )
    return bool(runs)


@dg.sensor(
    job=retraining_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launches `retraining_job` when `drift_report/no_feature_drift` or "
    "`live_model_performance/no_quality_degradation` fails; each failure triggers once (cursor), and "
    "nothing is requested while a retraining run is queued or in progress.",
)
def retrain_on_drift(context: dg.SensorEvaluationContext):
    """Turn a failed monitoring check into exactly one retraining run."""
    failures, cursor = new_check_failures(context.instance, _load_cursor(context.cursor))
    if not failures:
        context.update_cursor(json.dumps(cursor))
        return dg.SkipReason("no new failures of the monitoring checks")
    if retraining_in_progress(context.instance):
        # The running retraining already reads every labelled capture; these failures are consumed.
        context.update_cursor(json.dumps(cursor))
        return dg.SkipReason(
            f"{len(failures)} new check failure(s), but a retraining run is already queued or in progress"
        )
    context.update_cursor(json.dumps(cursor))
    trigger = failures[-1]
    return dg.RunRequest(
        run_key=f"{trigger['check']}:{trigger['partition']}:{trigger['record_id']}",
        tags={
            "housing_platform/trigger": "retrain_on_drift",
            "housing_platform/trigger_check": trigger["check"],
            "housing_platform/trigger_partition": str(trigger["partition"]),
            "housing_platform/trigger_description": trigger["description"][:1000],
            "housing_platform/trigger_scores": json.dumps(trigger["metadata"])[:1000],
            "housing_platform/trigger_failures": str(len(failures)),
        },
    )


def today_partition_key(now: datetime | None = None) -> str:
    return (now or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime("%Y-%m-%d")


@dg.schedule(
    job=monitoring_job,
    cron_schedule="0 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every hour, materialize today's inference_log, drift_report and live_model_performance.",
)
def hourly_monitoring(context: dg.ScheduleEvaluationContext):
    """Refresh today's (UTC) monitoring partition so drift shows up within the hour."""
    partition = today_partition_key(context.scheduled_execution_time)
    return dg.RunRequest(
        run_key=f"monitoring:{context.scheduled_execution_time.isoformat()}",
        partition_key=partition,
        tags={"housing_platform/trigger": "hourly_monitoring"},
    )
