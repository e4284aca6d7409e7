"""`retrain_on_drift`: each failed monitoring check triggers exactly one retraining request."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import dagster as dg
import pytest

from housing_platform.defs.definitions import build_definitions
from housing_platform.defs.jobs import RETRAINING_JOB
from housing_platform.defs.monitoring.partitions import today_partition_key
from housing_platform.defs.schedules import hourly_monitoring
from housing_platform.defs.sensors import new_check_failures, retrain_on_drift


@pytest.fixture(scope="module")
def defs(tmp_path_factory) -> dg.Definitions:
    from housing_platform.config.settings import HousingSettings

    home = tmp_path_factory.mktemp("sensor_state")
    return build_definitions(HousingSettings(home=home, data_path=home / "unused.csv"))


def report_check(instance: dg.DagsterInstance, asset: str, check: str, passed: bool, partition="2026-11-20", **metadata):
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


def tick(instance: dg.DagsterInstance, defs: dg.Definitions, cursor: str | None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    return retrain_on_drift(context), context.cursor


def test_no_failures_no_request_and_passing_checks_are_consumed(defs) -> None:
    with dg.instance_for_test() as instance:
        result, cursor = tick(instance, defs, None)
        assert isinstance(result, dg.SkipReason)
        report_check(instance, "drift_report", "no_feature_drift", passed=True)
        result, cursor = tick(instance, defs, cursor)
        assert isinstance(result, dg.SkipReason)
        assert json.loads(cursor)["drift_report:no_feature_drift"] > 0


def test_a_failure_triggers_once_with_its_context_in_tags(defs) -> None:
    with dg.instance_for_test() as instance:
        report_check(instance, "drift_report", "no_feature_drift", passed=False, drifted_share=0.33)
        request, cursor = tick(instance, defs, None)
        assert isinstance(request, dg.RunRequest)
        assert request.tags["housing_platform/trigger_check"] == "drift_report:no_feature_drift"
        assert request.tags["housing_platform/trigger_partition"] == "2026-11-20"
        assert "drifted_share" in request.tags["housing_platform/trigger_scores"]
        # The same failure is never requested twice.
        again, _ = tick(instance, defs, cursor)
        assert isinstance(again, dg.SkipReason)
        # A new failure (another check) triggers again.
        report_check(instance, "live_model_performance", "no_quality_degradation", passed=False)
        second, _ = tick(instance, defs, cursor)
        assert isinstance(second, dg.RunRequest)
        assert second.tags["housing_platform/trigger_check"] == "live_model_performance:no_quality_degradation"
        assert second.run_key != request.run_key


def test_no_request_while_a_retraining_run_is_in_progress(defs) -> None:
    with dg.instance_for_test() as instance:
        job = defs.resolve_job_def(RETRAINING_JOB)
        run = instance.create_run_for_job(job_def=job, status=dg.DagsterRunStatus.STARTED)
        report_check(instance, "drift_report", "no_feature_drift", passed=False)
        result, cursor = tick(instance, defs, None)
        assert isinstance(result, dg.SkipReason) and "in progress" in result.skip_message
        instance.report_run_failed(run)
        # The failure seen during the run was consumed; nothing is requested after it ends.
        after, _ = tick(instance, defs, cursor)
        assert isinstance(after, dg.SkipReason)


def test_cursor_reads_only_newer_evaluations(defs) -> None:
    with dg.instance_for_test() as instance:
        report_check(instance, "drift_report", "no_feature_drift", passed=False, partition="2026-11-19")
        failures, cursor = new_check_failures(instance, {})
        assert [f["partition"] for f in failures] == ["2026-11-19"]
        report_check(instance, "drift_report", "no_feature_drift", passed=False, partition="2026-11-20")
        failures, _ = new_check_failures(instance, cursor)
        assert [f["partition"] for f in failures] == ["2026-11-20"]


def test_hourly_schedule_targets_todays_utc_partition(defs) -> None:
    moment = datetime(2026, 11, 22, 23, 0, tzinfo=timezone.utc)
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=moment)
        request = hourly_monitoring(context)
    assert request.partition_key == "2026-11-22" == today_partition_key(moment)
