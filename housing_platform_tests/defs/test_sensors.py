"""`retrain_on_drift`: one retraining run per failed monitoring check, whoever ticks.

The instance is the record: a tick made anywhere (the demo's manual tick, the daemon with a fresh or
carried cursor) sees the runs already tagged with a failure and requests nothing for it again; the
cooldown and the daily budget hold new failures with a reason in the tick.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest

from housing_platform.config.settings import RetrainingPolicy
from housing_platform.core.retraining_policy import when
from housing_platform.defs.definitions import build_definitions
from housing_platform.defs.jobs import RETRAINING_JOB
from housing_platform.defs.monitoring.checks import DRIFT_ASSET, DRIFT_CHECK, QUALITY_ASSET, QUALITY_CHECK
from housing_platform.defs.monitoring.partitions import daily_partitions, today_partition_key
from housing_platform.defs.schedules import hourly_monitoring
from housing_platform.defs.sensors import (
    CHECK_TAG,
    EVALUATION_TAG,
    PARTITION_TAG,
    SENSOR_NAME,
    TRIGGER_TAG,
    check_execution_history,
    retraining_sensor,
)
from housing_platform.devtools import loop

DRIFT_KEY = dg.AssetCheckKey(dg.AssetKey(DRIFT_ASSET), DRIFT_CHECK)
# Only the rule under test holds: no cooldown, no budget limit.
UNLIMITED = RetrainingPolicy(cooldown_hours=0, daily_budget_runs=1_000)


@pytest.fixture(scope="module")
def defs(tmp_path_factory) -> dg.Definitions:
    from housing_platform.config.settings import HousingSettings

    home = tmp_path_factory.mktemp("sensor_state")
    return build_definitions(HousingSettings(home=home, data_path=home / "unused.csv"))


def report_check(instance: dg.DagsterInstance, passed: bool, partition="2026-11-20", asset=DRIFT_ASSET,
                 check=DRIFT_CHECK, **metadata) -> int:
    """Record an evaluation as a monitoring run would; returns its evaluation id."""
    instance.report_runless_asset_event(
        dg.AssetCheckEvaluation(
            asset_key=dg.AssetKey(asset),
            check_name=check,
            passed=passed,
            description="drifted: median_income" if not passed else "fine",
            metadata=metadata,
            partition=partition,
        )
    )
    key = dg.AssetCheckKey(dg.AssetKey(asset), check)
    return check_execution_history(instance, key, 1)[0].id


def launch(instance: dg.DagsterInstance, defs: dg.Definitions, tags: dict | None = None,
           status: dg.DagsterRunStatus = dg.DagsterRunStatus.SUCCESS) -> dg.DagsterRun:
    """A run of the retraining job as the daemon (or the demo) leaves it on the instance."""
    job = defs.resolve_job_def(RETRAINING_JOB)
    return instance.create_run_for_job(job_def=job, status=status, tags=tags or {})


def daemon_tick(defs: dg.Definitions, instance: dg.DagsterInstance, sensor=None, cursor: str | None = None):
    """A tick as the daemon makes it: the sensor's own evaluation, with whatever cursor it kept."""
    sensor = sensor or defs.resolve_sensor_def(SENSOR_NAME)
    return sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs))


def at(moment: datetime):
    return lambda: moment


def test_no_failure_no_request_and_a_pass_is_not_a_failure(defs) -> None:
    with dg.instance_for_test() as instance:
        assert loop.tick_sensor(defs, instance).requests == []
        report_check(instance, passed=True)
        tick = loop.tick_sensor(defs, instance)
        assert tick.requests == [] and "no failed evaluation" in tick.skip_reason


def test_a_failure_requests_one_run_tagged_with_the_failure_it_answers(defs) -> None:
    with dg.instance_for_test() as instance:
        evaluation = report_check(instance, passed=False, drifted_share=0.33)
        tick = loop.tick_sensor(defs, instance)
        assert len(tick.requests) == 1
        tags = tick.request.tags
        assert tags[TRIGGER_TAG] == SENSOR_NAME
        assert tags[CHECK_TAG] == "drift_report:no_feature_drift"
        assert tags[PARTITION_TAG] == "2026-11-20"
        assert tags[EVALUATION_TAG] == str(evaluation)
        assert "drifted_share" in tags["housing_platform/trigger_scores"]
        assert tick.request.run_key == f"drift_report:no_feature_drift:2026-11-20:{evaluation}"


def test_the_demos_manual_tick_then_a_daemon_tick_with_a_fresh_cursor_launch_one_run(defs) -> None:
    with dg.instance_for_test() as instance:
        report_check(instance, passed=False)
        manual = loop.tick_sensor(defs, instance)  # what `make demo` does, then it executes the run
        launch(instance, defs, tags=dict(manual.request.tags))
        after = daemon_tick(defs, instance, cursor=None)  # `make dev` starts: a fresh cursor
        assert not after.run_requests
        assert "is answered by run" in after.skip_message
        # Not the cooldown's doing: with no cooldown and no budget the answered failure still stays answered.
        unlimited = daemon_tick(defs, instance, retraining_sensor(UNLIMITED), cursor='{"anything": 1}')
        assert not unlimited.run_requests and "is answered by run" in unlimited.skip_message


@pytest.mark.parametrize(
    "status",
    [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.SUCCESS,
     dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED],
)
def test_a_failure_a_run_is_tagged_with_is_not_answered_again_whatever_that_runs_status(defs, status) -> None:
    with dg.instance_for_test() as instance:
        # A run that looks launched before the failure (a run storage whose clock is behind): only its
        # tags, looked up on the instance, say that it answers the failure.
        run = launch(instance, defs, status=status)
        evaluation = report_check(instance, passed=False)
        failure = {CHECK_TAG: "drift_report:no_feature_drift", PARTITION_TAG: "2026-11-20", EVALUATION_TAG: str(evaluation)}
        instance.add_run_tags(run.run_id, failure)
        tick = loop.tick_sensor(defs, instance, retraining_sensor(UNLIMITED))
        assert tick.requests == []
        assert f"is answered by run {run.run_id[:8]} ({status.value}" in tick.skip_reason


def test_a_failure_answered_by_a_failed_run_is_not_retried_and_the_tick_says_so(defs) -> None:
    with dg.instance_for_test() as instance:
        report_check(instance, passed=False)
        request = loop.tick_sensor(defs, instance).request
        launch(instance, defs, tags=dict(request.tags), status=dg.DagsterRunStatus.FAILURE)
        tick = loop.tick_sensor(defs, instance, retraining_sensor(UNLIMITED))
        assert tick.requests == []
        assert "(FAILURE" in tick.skip_reason and "not retried automatically" in tick.skip_reason


def test_a_new_failure_after_the_cooldown_requests_exactly_one_run(defs) -> None:
    with dg.instance_for_test() as instance:
        report_check(instance, passed=False, partition="2026-11-19")
        launch(instance, defs, tags=dict(loop.tick_sensor(defs, instance).request.tags))
        new = report_check(instance, passed=False, asset=QUALITY_ASSET, check=QUALITY_CHECK)
        later = retraining_sensor(RetrainingPolicy(cooldown_hours=6), clock=at(datetime.now(timezone.utc) + timedelta(hours=6.1)))
        tick = loop.tick_sensor(defs, instance, later)
        assert len(tick.requests) == 1
        assert tick.request.tags[EVALUATION_TAG] == str(new)
        assert tick.request.tags[CHECK_TAG] == "live_model_performance:no_quality_degradation"


def test_within_the_cooldown_a_new_failure_is_skipped_naming_it_the_rule_and_the_next_allowed_time(defs) -> None:
    with dg.instance_for_test() as instance:
        report_check(instance, passed=False, partition="2026-11-19")
        run = launch(instance, defs, tags=dict(loop.tick_sensor(defs, instance).request.tags))
        new = report_check(instance, passed=False)
        launched = instance.get_run_record_by_id(run.run_id).create_timestamp
        soon = retraining_sensor(RetrainingPolicy(cooldown_hours=6), clock=at(launched + timedelta(hours=1)))
        tick = loop.tick_sensor(defs, instance, soon)
        assert tick.requests == []
        assert f"evaluation {new}" in tick.skip_reason
        assert "cooldown of 6 h" in tick.skip_reason
        assert f"next retraining allowed at {when(launched + timedelta(hours=6))}" in tick.skip_reason


def test_once_the_daily_budget_is_used_a_new_failure_is_skipped_until_the_next_utc_day(defs) -> None:
    with dg.instance_for_test() as instance:
        for _ in range(2):
            launch(instance, defs, tags={TRIGGER_TAG: SENSOR_NAME})
        new = report_check(instance, passed=False)
        now = datetime.now(timezone.utc)
        two_a_day = retraining_sensor(RetrainingPolicy(cooldown_hours=0, daily_budget_runs=2), clock=at(now))
        tick = loop.tick_sensor(defs, instance, two_a_day)
        assert tick.requests == []
        assert f"evaluation {new}" in tick.skip_reason and "daily budget is used: 2 of 2" in tick.skip_reason
        tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        assert f"next retraining allowed at {when(tomorrow)}" in tick.skip_reason
        # A budget of three leaves room for it.
        three_a_day = retraining_sensor(RetrainingPolicy(cooldown_hours=0, daily_budget_runs=3), clock=at(now))
        assert len(loop.tick_sensor(defs, instance, three_a_day).requests) == 1


def test_no_request_while_a_retraining_run_is_in_progress(defs) -> None:
    with dg.instance_for_test() as instance:
        launch(instance, defs, status=dg.DagsterRunStatus.STARTED)
        report_check(instance, passed=False)
        tick = loop.tick_sensor(defs, instance, retraining_sensor(UNLIMITED))
        assert tick.requests == [] and "in progress" in tick.skip_reason


def stand_in_drift_report(passed: bool, during=None) -> dg.AssetsDefinition:
    """`drift_report` and its check as a monitoring run evaluates them; ``during(context)`` runs mid-step."""

    @dg.asset(name=DRIFT_ASSET, partitions_def=daily_partitions,
              check_specs=[dg.AssetCheckSpec(DRIFT_CHECK, asset=DRIFT_ASSET, partitions_def=daily_partitions)])
    def drift_report(context):
        if during is not None:
            during(context)
        return dg.MaterializeResult(check_results=[dg.AssetCheckResult(check_name=DRIFT_CHECK, passed=passed)])

    return drift_report


def test_a_newer_pass_of_the_same_check_and_day_resolves_an_older_failure(defs) -> None:
    with dg.instance_for_test() as instance:
        dg.materialize([stand_in_drift_report(passed=False)], instance=instance, partition_key="2026-11-20")
        assert len(loop.tick_sensor(defs, instance, retraining_sensor(UNLIMITED)).requests) == 1
        dg.materialize([stand_in_drift_report(passed=True)], instance=instance, partition_key="2026-11-20")
        assert loop.tick_sensor(defs, instance, retraining_sensor(UNLIMITED)).requests == []


def test_a_check_still_running_when_the_daemon_ticks_is_answered_once_it_fails(defs) -> None:
    """The daemon ticks while a monitoring run is executing (the check is planned, not evaluated);
    keeping its cursor, its next tick after the check failed must still see the failure."""
    partition = "2026-11-20"
    mid_run = {}

    def tick_mid_run(context) -> None:
        mid_run["records"] = check_execution_history(context.instance, DRIFT_KEY, 5)
        mid_run["tick"] = daemon_tick(defs, context.instance)

    with dg.instance_for_test() as instance:
        drift_report = stand_in_drift_report(passed=False, during=tick_mid_run)
        result = dg.materialize([drift_report], instance=instance, partition_key=partition)
        assert [r.status.value for r in mid_run["records"]] == ["PLANNED"]  # the tick saw the check running
        assert not mid_run["tick"].run_requests
        after = daemon_tick(defs, instance, cursor=mid_run["tick"].cursor)
        assert len(after.run_requests) == 1
        tags = after.run_requests[0].tags
        assert (tags[PARTITION_TAG], tags[EVALUATION_TAG]) == (partition, str(mid_run["records"][0].id))
        assert not result.get_asset_check_evaluations()[0].passed


def test_the_policy_is_read_from_the_environment(defs, monkeypatch) -> None:
    monkeypatch.setenv("HOUSING_RETRAINING__DAILY_BUDGET_RUNS", "0")
    with dg.instance_for_test() as instance:
        report_check(instance, passed=False)
        tick = loop.tick_sensor(defs, instance, retraining_sensor())
        assert tick.requests == [] and "daily_budget_runs is 0" in tick.skip_reason


def test_hourly_schedule_targets_todays_utc_partition(defs) -> None:
    moment = datetime(2026, 11, 22, 23, 0, tzinfo=timezone.utc)
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=moment)
        request = hourly_monitoring(context)
    assert request.partition_key == "2026-11-22" == today_partition_key(moment)
