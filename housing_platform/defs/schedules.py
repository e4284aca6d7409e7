"""Refresh today's monitoring partition every hour, so drift shows up within the hour."""

import dagster as dg

from housing_platform.defs.jobs import drift_history_job, monitoring_job
from housing_platform.defs.monitoring.partitions import today_partition_key


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


@dg.schedule(
    job=drift_history_job,
    cron_schedule="15 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every hour, a quarter past (after hourly_monitoring), redraw drift_history.",
)
def hourly_drift_history(context: dg.ScheduleEvaluationContext):
    """Redraw the drift history once the hour's monitoring has run, so it shows today's verdict."""
    return dg.RunRequest(
        run_key=f"drift_history:{context.scheduled_execution_time.isoformat()}",
        tags={"housing_platform/trigger": "hourly_drift_history"},
    )
