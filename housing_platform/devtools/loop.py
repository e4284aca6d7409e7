"""The closed loop, step by step: train → serve → traffic → monitor → sensor → retrain → swap.

`make demo` and the end-to-end test drive the platform through these functions, which use only the
public pieces a user has: the Dagster definitions and instance, the `housing-platform serve`
command in a subprocess, real HTTP traffic, and the `retrain_on_drift` sensor evaluated against the
instance (what the daemon does every minute when `make dev` runs).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from housing_platform.defs.sensors import MONITORING_JOB, RETRAINING_JOB, retrain_on_drift, today_partition_key
from housing_platform.config.settings import HousingSettings

TRAINING_SELECTION = dg.AssetSelection.groups("ingestion", "training", "registry")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ModelServer:
    """`housing-platform serve` in a background process, stopped gracefully (SIGTERM) on exit."""

    def __init__(self, settings: HousingSettings, port: int | None = None, poll_interval_seconds: float = 1.0,
                 log_path: Path | None = None):
        self.settings = settings
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.poll_interval_seconds = poll_interval_seconds
        self.log_path = log_path or settings.home / "logs" / f"server-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "ModelServer":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "HOUSING_HOME": str(self.settings.home), "HOUSING_DATA_PATH": str(self.settings.data_path)}
        command = [
            sys.executable, "-m", "housing_platform.cli.main", "serve", "--port", str(self.port),
            "--poll-interval-seconds", str(self.poll_interval_seconds), "--log-level", "warning",
        ]
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(command, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self.wait_ready()
        return self

    def wait_ready(self, timeout_seconds: float = 180.0) -> dict:
        import httpx

        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the model server exited with {self.process.returncode}; see {self.log_path}")
            try:
                response = httpx.get(f"{self.url}/ready", timeout=2.0)
                if response.status_code == 200:
                    return response.json()
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"the model server was not ready within {timeout_seconds:.0f} s; see {self.log_path}")

    def serving_version(self) -> str:
        import httpx

        return str(httpx.get(f"{self.url}/ready", timeout=5.0).json().get("model_version"))

    def wait_for_version(self, version: str, timeout_seconds: float = 120.0) -> bool:
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self.serving_version() == str(version):
                return True
            time.sleep(0.5)
        return False

    def stop(self, timeout_seconds: float = 60.0) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_seconds)
        finally:
            self._log.close()

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.stop()
            if self.process.poll() is None:
                self.process.kill()


@dataclass
class SensorTick:
    request: dg.RunRequest | None
    skip_reason: str | None
    cursor: str | None


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


def tick_sensor(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None) -> SensorTick:
    """Evaluate `retrain_on_drift` once against ``instance``, as the daemon would."""
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    result = retrain_on_drift(context)
    if isinstance(result, dg.RunRequest):
        return SensorTick(result, None, context.cursor)
    return SensorTick(None, result.skip_message if isinstance(result, dg.SkipReason) else None, context.cursor)


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
