"""The closed loop, step by step: train → serve → traffic → monitor → sensor → retrain → swap.

`make demo` and the end-to-end test drive the platform through these functions, which use only the
public pieces a user has: the Dagster definitions and instance, the `housing-platform serve`
command in a subprocess, real HTTP traffic, and the `retrain_on_drift` sensor evaluated against the
instance (what the daemon does every minute when `make dev` runs). The sensor keeps no state of its
own: a tick here and the daemon's next tick read the same instance, so a failure answered here is not
answered again there.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from housing_platform.defs.jobs import DRIFT_HISTORY_JOB, MONITORING_JOB, RETRAINING_JOB
from housing_platform.defs.monitoring.partitions import today_partition_key
from housing_platform.defs.sensors import SENSOR_NAME

TRAINING_SELECTION = dg.AssetSelection.groups("ingestion", "labels", "training", "registry")
# A few epochs: enough for the gate to pass on the real data in seconds (end-to-end tests, UI tour).
SMALL_TRAINING = {
    "ops": {"trained_model": {"config": {"epochs": 3}}},
    "loggers": {"console": {"config": {"log_level": "WARNING"}}},
}
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass
class SensorTick:
    requests: list[dg.RunRequest]
    skip_reason: str | None

    @property
    def request(self) -> dg.RunRequest | None:
        """The run requested (the sensor requests at most one per tick), or None."""
        return self.requests[0] if self.requests else None


def train(defs: dg.Definitions, instance: dg.DagsterInstance, run_config: dict | None = None,
          tags: dict | None = None) -> dg.ExecuteInProcessResult:
    """Materialize ingestion → training → registry (the gate decides whether a version is registered)."""
    return dg.materialize(
        [*(defs.assets or []), *(defs.asset_checks or [])],
        selection=TRAINING_SELECTION,
        instance=instance,
        resources=defs.resources,
        run_config=run_config or {},
        raise_on_error=False,
        tags=tags or {},
    )


def monitor(defs: dg.Definitions, instance: dg.DagsterInstance, partition_key: str | None = None,
            run_config: dict | None = None) -> dg.ExecuteInProcessResult:
    """Materialize one day of inference_log, drift_report and live_model_performance (with checks)."""
    job = defs.resolve_job_def(MONITORING_JOB)
    return job.execute_in_process(
        instance=instance,
        partition_key=partition_key or today_partition_key(),
        run_config=run_config or {},
        raise_on_error=False,
        tags={"housing_platform/trigger": "loop"},
    )


def draw_history(defs: dg.Definitions, instance: dg.DagsterInstance,
                 run_config: dict | None = None) -> dg.ExecuteInProcessResult:
    """Materialize drift_history: the last days of drift and what followed each failed day."""
    return defs.resolve_job_def(DRIFT_HISTORY_JOB).execute_in_process(
        instance=instance, run_config=run_config or {}, raise_on_error=False, tags={"housing_platform/trigger": "loop"}
    )


def tick_sensor(defs: dg.Definitions, instance: dg.DagsterInstance,
                sensor: dg.SensorDefinition | None = None) -> SensorTick:
    """Evaluate the retraining sensor once against ``instance``, as the daemon would (fresh context, no cursor).

    ``sensor`` defaults to the definitions' `retrain_on_drift`; tests pass one built with another policy.
    """
    sensor = sensor or defs.resolve_sensor_def(SENSOR_NAME)
    data = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    return SensorTick(list(data.run_requests or []), data.skip_message)


def retrain(defs: dg.Definitions, instance: dg.DagsterInstance, request: dg.RunRequest,
            run_config: dict | None = None) -> dg.ExecuteInProcessResult:
    """Execute the retraining run a sensor requested, with the request's tags."""
    job = defs.resolve_job_def(RETRAINING_JOB)
    return job.execute_in_process(
        instance=instance, run_config=run_config or {}, tags=dict(request.tags), raise_on_error=False
    )


def step_durations(result: dg.ExecuteInProcessResult) -> list[tuple[str, float]]:
    """(step key, seconds) of every step that succeeded, in execution order."""
    return [
        (event.step_key, event.event_specific_data.duration_ms / 1000)
        for event in result.all_events
        if event.event_type_value == "STEP_SUCCESS"
    ]


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {f"{e.asset_key.to_user_string()}:{e.check_name}": e for e in result.get_asset_check_evaluations()}


def _materialize(defs: dg.Definitions, instance: dg.DagsterInstance, asset: str, partition_key: str | None = None,
                 run_config: dict | None = None) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*(defs.assets or []), *(defs.asset_checks or [])],
        selection=dg.AssetSelection.assets(asset),
        instance=instance,
        resources=defs.resources,
        partition_key=partition_key,
        run_config=run_config or QUIET_LOGS,
        raise_on_error=False,
        tags={"housing_platform/trigger": "loop"},
    )


def judge_labels(defs: dg.Definitions, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """Materialize `labelled_traffic`: the label gate judges the feedback never judged before."""
    return _materialize(defs, instance, "labelled_traffic")


def compare_challenger(defs: dg.Definitions, instance: dg.DagsterInstance,
                       partition_key: str | None = None) -> dg.ExecuteInProcessResult:
    """Materialize today's `challenger_comparison` (with its decision check): promote, wait or reject."""
    return _materialize(defs, instance, "challenger_comparison", partition_key or today_partition_key())
