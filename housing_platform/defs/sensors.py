"""Retrain when a monitoring check fails.

Dagster has no "run when a check fails": a failed check does not fail its run, so run-failure
sensors never see it (dagster-io/dagster#29896), and blocking checks only stop downstream work inside
one run (#25112). `retrain_on_drift` closes that gap by reading the latest evaluations of the two
monitoring checks from the instance. Each evaluation has an increasing storage id, which is the
cursor: a failure triggers at most once.
"""

import json

import dagster as dg

from housing_platform.defs.jobs import RETRAINING_JOB, retraining_job
from housing_platform.defs.monitoring.checks import WATCHED_CHECKS

ACTIVE_RUN_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
HISTORY_PER_TICK = 50


def _load_cursor(cursor: str | None) -> dict[str, int]:
    return json.loads(cursor) if cursor else {}


def check_execution_history(instance: dg.DagsterInstance, key: dg.AssetCheckKey, limit: int) -> list:
    """The latest executions of a check, newest first, each with the storage id the cursor counts.

    Dagster 1.13 has no public method for this. `DagsterInstance` publicly reads materializations,
    observations and run status changes only; `get_latest_asset_check_evaluation_record` gives one
    record; `get_event_records` is deprecated and, on the default run-sharded SQLite storage, has no
    storage id that increases across runs. So this one call goes to the instance's event log storage
    (`asset_check_executions`, ids increasing on every storage); everything read from a record below is
    public (`AssetCheckEvaluation`).
    """
    return list(instance.event_log_storage.get_asset_check_execution_history(key, limit=limit))


def new_check_failures(instance: dg.DagsterInstance, cursor: dict[str, int]) -> tuple[list[dict], dict[str, int]]:
    """Failed evaluations of the watched checks newer than ``cursor``; and the advanced cursor."""
    failures, advanced = [], dict(cursor)
    for key in WATCHED_CHECKS:
        name = key.to_user_string()
        seen = cursor.get(name, 0)
        for record in check_execution_history(instance, key, HISTORY_PER_TICK):
            if record.id <= seen:
                continue
            advanced[name] = max(advanced.get(name, 0), record.id)
            evaluation = record.event.asset_check_evaluation if record.event else None
            # A record without an evaluation is planned (running); a failed one carries passed=False.
            if evaluation is not None and not evaluation.passed:
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
