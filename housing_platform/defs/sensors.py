"""Retrain when a monitoring check fails: one retraining run per failed evaluation, whoever ticks.

Dagster has no "run when a check fails": a failed check does not fail its run, so run-failure
sensors never see it (dagster-io/dagster#29896), and blocking checks only stop downstream work inside
one run (#25112). `retrain_on_drift` closes that gap by reading the latest evaluations of the two
monitoring checks from the instance.

The instance is the source of truth, not the sensor's cursor. Every run the sensor requests carries
tags naming the failure it answers (check, partition, evaluation id: ``FAILURE_TAGS``) and a run key
made of the same; each tick looks those runs up by tag, so a tick made anywhere else — `make demo`'s
manual tick, a test, a daemon whose cursor was reset — requests nothing for a failure already
answered, and the daemon also drops a request whose run key it has launched before. Which failure
may be answered now (cooldown, daily budget, runs in progress) is decided by the pure
`core/retraining_policy.py` with the limits of ``HousingSettings.retraining``.
"""

import json
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone

import dagster as dg

from housing_platform.config.settings import HousingSettings, RetrainingPolicy
from housing_platform.core.retraining_policy import (
    CheckFailure,
    RetrainingDecision,
    RetrainingRun,
    decide_retraining,
    utc_day_start,
)
from housing_platform.defs.jobs import RETRAINING_JOB, retraining_job
from housing_platform.defs.monitoring.checks import WATCHED_CHECKS

SENSOR_NAME = "retrain_on_drift"
TRIGGER_TAG = "housing_platform/trigger"
CHECK_TAG = "housing_platform/trigger_check"  # e.g. drift_report:no_feature_drift
PARTITION_TAG = "housing_platform/trigger_partition"  # the day, or UNPARTITIONED
EVALUATION_TAG = "housing_platform/trigger_evaluation"  # the evaluation record's id on the instance
FAILURE_TAGS = (CHECK_TAG, PARTITION_TAG, EVALUATION_TAG)
UNPARTITIONED = "unpartitioned"

ACTIVE_RUN_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
FAILED_RUN_STATUSES = {dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELING, dg.DagsterRunStatus.CANCELED}
HISTORY_PER_TICK = 50  # newest executions read per check: about two days of hourly monitoring


def check_execution_history(instance: dg.DagsterInstance, key: dg.AssetCheckKey, limit: int) -> list:
    """The latest executions of a check, newest first, each with its record id.

    Dagster 1.13 has no public method for this. `DagsterInstance` publicly reads materializations,
    observations and run status changes only; `get_latest_asset_check_evaluation_record` gives one
    record; `get_event_records` is deprecated. So this one call goes to the instance's event log
    storage (`asset_check_executions`); everything read from a record below is public
    (`AssetCheckEvaluation`). A record's id is kept when the planned record of a running check becomes
    its evaluation, which makes it the failure's stable id.
    """
    return list(instance.event_log_storage.get_asset_check_execution_history(key, limit=limit))


def latest_check_failures(instance: dg.DagsterInstance) -> list[CheckFailure]:
    """The watched checks' failures that are still their check's latest verdict on their partition.

    A record still planned (its monitoring run is executing) is not a verdict yet and is read again on
    the next tick; an older evaluation of the same check and partition is superseded by the newer one.
    """
    failures = []
    for key in WATCHED_CHECKS:
        judged: set[str | None] = set()
        for record in check_execution_history(instance, key, HISTORY_PER_TICK):
            evaluation = record.event.asset_check_evaluation if record.event else None
            if evaluation is None:
                continue
            partition = record.partition or evaluation.partition
            if partition in judged:
                continue
            judged.add(partition)
            if not evaluation.passed:
                failures.append(
                    CheckFailure(
                        check=key.to_user_string(),
                        partition=partition,
                        evaluation_id=record.id,
                        evaluated_at=datetime.fromtimestamp(record.event.timestamp, timezone.utc),
                        description=evaluation.description or "",
                        details={k: str(v.value) for k, v in evaluation.metadata.items()},
                    )
                )
    return failures


def failure_tags(failure: CheckFailure) -> dict[str, str]:
    """The tags that say which failure a run answers (what a ticker looks runs up by)."""
    return {
        CHECK_TAG: failure.check,
        PARTITION_TAG: failure.partition or UNPARTITIONED,
        EVALUATION_TAG: str(failure.evaluation_id),
    }


def _failure_key(tags: dict[str, str]) -> tuple[str, str | None, int] | None:
    try:
        partition = tags[PARTITION_TAG]
        return (tags[CHECK_TAG], None if partition == UNPARTITIONED else partition, int(tags[EVALUATION_TAG]))
    except (KeyError, ValueError):
        return None


def _retraining_run(record: dg.RunRecord) -> RetrainingRun:
    run = record.dagster_run
    return RetrainingRun(
        run_id=run.run_id,
        status=run.status.value,
        launched_at=record.create_timestamp,
        active=run.status in ACTIVE_RUN_STATUSES,
        failed=run.status in FAILED_RUN_STATUSES,
        automatic=run.tags.get(TRIGGER_TAG) == SENSOR_NAME,
    )


def answering_runs(instance: dg.DagsterInstance, failures: Sequence[CheckFailure]) -> dict:
    """Runs of any status tagged with one of ``failures``, by failure key (one query by tag)."""
    if not failures:
        return {}
    wanted = {failure.key for failure in failures}
    records = instance.get_run_records(
        dg.RunsFilter(tags={EVALUATION_TAG: sorted({str(f.evaluation_id) for f in failures})})
    )
    answers: dict = {}
    for record in records:
        key = _failure_key(dict(record.dagster_run.tags))
        if key in wanted:
            answers.setdefault(key, []).append(_retraining_run(record))
    return answers


def recent_retraining_runs(instance: dg.DagsterInstance, now: datetime, policy: RetrainingPolicy) -> list:
    """The retraining runs the policy weighs: today's, the cooldown's, the active ones and the latest."""
    since = min(utc_day_start(now), now - timedelta(hours=policy.cooldown_hours))
    queries = [
        (dg.RunsFilter(job_name=RETRAINING_JOB, created_after=since), None),
        (dg.RunsFilter(job_name=RETRAINING_JOB, statuses=ACTIVE_RUN_STATUSES), None),
        (dg.RunsFilter(job_name=RETRAINING_JOB), 1),
    ]
    records = {r.dagster_run.run_id: r for filters, limit in queries for r in instance.get_run_records(filters, limit)}
    return [_retraining_run(record) for record in records.values()]


def evaluate_retraining(instance: dg.DagsterInstance, policy: RetrainingPolicy, now: datetime) -> RetrainingDecision:
    """What the sensor decides on ``instance`` at ``now``: read the failures and runs, apply the policy."""
    failures = latest_check_failures(instance)
    return decide_retraining(
        failures, answering_runs(instance, failures), recent_retraining_runs(instance, now, policy), now, policy
    )


def retraining_request(decision: RetrainingDecision) -> dg.RunRequest:
    failure = decision.answer
    tags = failure_tags(failure)
    return dg.RunRequest(
        run_key=":".join(tags[name] for name in FAILURE_TAGS),
        tags={
            TRIGGER_TAG: SENSOR_NAME,
            **tags,
            "housing_platform/trigger_description": failure.description[:1000],
            "housing_platform/trigger_scores": json.dumps(dict(failure.details))[:1000],
            "housing_platform/trigger_open_failures": str(len(decision.open_failures)),
        },
    )


def retraining_sensor(
    policy: RetrainingPolicy | None = None, clock: Callable[[], datetime] | None = None
) -> dg.SensorDefinition:
    """`retrain_on_drift` under ``policy`` (default: ``HousingSettings.retraining`` from the environment)."""
    policy = policy or HousingSettings.from_env().retraining
    clock = clock or (lambda: datetime.now(timezone.utc))

    @dg.sensor(
        name=SENSOR_NAME,
        job=retraining_job,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Launches `retraining_job` when `drift_report/no_feature_drift` or "
        "`live_model_performance/no_quality_degradation` fails: one run per failed evaluation, whoever ticks "
        "(the runs are tagged with the failure they answer), none while one is in progress, none within "
        f"{policy.cooldown_hours:g} h of the last retraining and at most {policy.daily_budget_runs} per UTC day "
        "(`HOUSING_RETRAINING__*`). A skipped tick says which rule held which failure, and until when.",
    )
    def retrain_on_drift(context: dg.SensorEvaluationContext):
        """Turn a failed monitoring check into exactly one retraining run."""
        decision = evaluate_retraining(context.instance, policy, clock())
        if decision.answer is None:
            return dg.SkipReason(decision.reason)
        context.log.info(decision.reason)
        return retraining_request(decision)

    return retrain_on_drift


retrain_on_drift = retraining_sensor()
