"""End to end: the closed loop with a real server on loopback, real traffic and a real instance.

stable traffic → checks pass, the sensor requests nothing; shifted traffic with feedback → the
drift check fails → the sensor yields exactly one run request → executing it trains and registers
through the gate → the champion moves only if the gate passed (and the server swaps to it) → the
daemon's tick on the same instance, with a fresh cursor, launches nothing more. With the default rollout
(canary) the passing version becomes `challenger` first and the server answers a share of rows with it.
"""

from __future__ import annotations

import time

import dagster as dg
import httpx
import pytest

from housing_platform.adapters.alias_moves import CHALLENGER_ALIAS, promote_challenger, rollout_of, set_rollout
from housing_platform.adapters.mlflow_registry import ModelRegistry
from housing_platform.config.settings import HousingSettings, RetrainingPolicy
from housing_platform.core import model_gate as gate
from housing_platform.core.rollout import RolloutConfig
from housing_platform.defs.definitions import build_definitions
from housing_platform.defs.jobs import RETRAINING_JOB
from housing_platform.defs.sensors import EVALUATION_TAG, SENSOR_NAME, retraining_sensor
from housing_platform.devtools import loop
from housing_platform.devtools.loop import SMALL_TRAINING
from housing_platform.devtools.model_server import ModelServer
from housing_platform.devtools.simulator import simulate

pytestmark = pytest.mark.slow

# Gate limits that no model / every model meets, so the test does not depend on how well a 3-epoch
# model trains on this machine (the gate's own rules are tested in core/test_model_gate.py).
REFUSING_GATE = {"max_rmse_dollars": 1.0}
ACCEPTING_GATE = {
    "max_rmse_dollars": 1e12,
    "min_improvement_over_baseline": -1e6,
    "max_regression_vs_champion": 1e6,
    "max_slice_rmse_ratio": 1e6,
    "max_golden_regression_vs_champion": 1e6,
}
DRIFT_CHECK = "drift_report:no_feature_drift"
QUALITY_CHECK = "live_model_performance:no_quality_degradation"


def with_gate(limits: dict) -> dict:
    return {**SMALL_TRAINING, "ops": {**SMALL_TRAINING["ops"], "evaluation_report": {"config": limits}}}


def gate_verdicts(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {
        e.check_name: e.passed
        for e in result.get_asset_check_evaluations()
        if e.asset_key == dg.AssetKey("evaluation_report")
    }


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("loop_state")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOUSING_HOME", str(home))
        for variable in ("MLFLOW_TRACKING_URI", "HOUSING_CAPTURE_URL", "HOUSING_DATA_PATH"):
            patch.delenv(variable, raising=False)
        settings = HousingSettings.from_env()
        defs = build_definitions(settings)
        with dg.instance_for_test() as instance:
            first = loop.train(defs, instance, SMALL_TRAINING)
            assert first.success
            with ModelServer(settings, poll_interval_seconds=1.0) as server:
                yield settings, defs, instance, server


def test_closed_loop_from_drift_to_a_refused_candidate_and_a_promoted_served_champion(platform) -> None:
    settings, defs, instance, server = platform
    registry = ModelRegistry(settings.mlflow_tracking_uri, settings.mlflow_artifact_root)
    assert server.serving_version() == "1"

    stable = simulate(server.url, "stable", 1_000, data_path=settings.data_path, feedback=True, seed=1)
    assert stable.failed_requests == 0 and stable.rows_scored == 1_000 and stable.model_versions == {"1"}
    calm = loop.check_results(loop.monitor(defs, instance))
    assert calm[DRIFT_CHECK].passed, calm[DRIFT_CHECK].description
    assert calm[QUALITY_CHECK].passed, calm[QUALITY_CHECK].description
    assert loop.tick_sensor(defs, instance).requests == []

    shifted = simulate(server.url, "income_shift", 1_500, data_path=settings.data_path, feedback=True, seed=2)
    assert shifted.failed_requests == 0 and shifted.feedback_sent == 1_500
    alarmed = loop.check_results(loop.monitor(defs, instance))
    assert not alarmed[DRIFT_CHECK].passed
    assert "median_income" in alarmed[DRIFT_CHECK].metadata["drifted_columns"].value

    tick = loop.tick_sensor(defs, instance)  # the demo's manual tick
    assert len(tick.requests) == 1
    assert tick.request.tags["housing_platform/trigger_check"] in {DRIFT_CHECK, QUALITY_CHECK}

    # The gate decides, not this machine's training outcome: the same retraining request is run
    # once under a gate no model can pass and once under one every model passes, so both of the
    # gate's outcomes are exercised, deterministically, on any CPU.
    refused = loop.retrain(defs, instance, tick.request, with_gate(REFUSING_GATE))
    assert not refused.success
    verdicts = gate_verdicts(refused)
    assert set(verdicts) == set(gate.GATE_CHECKS)
    assert verdicts[gate.RMSE_CHECK] is False
    assert refused.asset_materializations_for_node("registered_model_version") == []
    assert registry.champion().version == "1" and server.serving_version() == "1"

    promoted = loop.retrain(defs, instance, tick.request, with_gate(ACCEPTING_GATE))
    training_data = promoted.asset_materializations_for_node("training_data")[0].metadata
    assert training_data["feedback_rows_raw"].value == 2_500  # the labelled live traffic is learned from
    assert gate_verdicts(promoted) == dict.fromkeys(gate.GATE_CHECKS, True)
    report = defs.load_asset_value("evaluation_report", instance=instance)
    assert report["champion"]["version"] == "1"  # compared with the real champion on the same rows
    assert promoted.success
    # The default rollout is canary: the version that passed the gate is `challenger`, served beside the
    # champion for its share of rows, until challenger_comparison (or a person) decides.
    assert registry.champion().version == "1" and registry.version_by_alias(CHALLENGER_ALIAS).version == "2"
    assert rollout_of(registry.version_by_alias(CHALLENGER_ALIAS)) == ("canary", RolloutConfig().share)
    set_rollout(registry, "e2e test", share=0.5)
    deadline = time.monotonic() + 60
    while httpx.get(f"{server.url}/ready", timeout=5).json().get("rollout_share") != 0.5:
        assert time.monotonic() < deadline, "the server never served the challenger at share 0.5"
        time.sleep(0.5)
    canary = simulate(server.url, "stable", 200, data_path=settings.data_path, seed=3)
    assert set(canary.rows_by_version) == {"1", "2"} and canary.failed_requests == 0
    promote_challenger(registry, "e2e test", "promoted by hand")  # what a `promote` decision does
    assert registry.champion().version == "2"
    assert server.wait_for_version("2", timeout_seconds=60)
    after = simulate(server.url, "stable", 200, data_path=settings.data_path, seed=3)
    assert after.model_versions == {"2"} and after.failed_requests == 0

    # `make dev` after the demo: the daemon ticks the definitions' sensor on the same instance with a
    # fresh cursor, and nothing is launched — not because of the cooldown: without one, the failure is
    # still answered by the runs tagged with it.
    retraining_runs = dg.RunsFilter(job_name=RETRAINING_JOB)
    answered = {run.tags[EVALUATION_TAG] for run in instance.get_runs(retraining_runs)}
    assert answered == {tick.request.tags[EVALUATION_TAG]}
    unlimited = retraining_sensor(RetrainingPolicy(cooldown_hours=0, daily_budget_runs=1_000))
    for sensor in (defs.resolve_sensor_def(SENSOR_NAME), unlimited):
        daemon = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=None, definitions=defs))
        assert not daemon.run_requests
        assert "is answered by run" in daemon.skip_message, daemon.skip_message
    assert instance.get_runs_count(retraining_runs) == 2


def test_the_demos_rollback_scenario_rolls_a_degraded_direct_promotion_back_and_the_server_serves_previous(
    platform, capsys
) -> None:
    """`housing-platform demo --scenario rollback` as it runs, on the loop's state: its run config must be one
    the graph accepts (it once named a renamed gate field and failed before training) and its story must end
    with the sensor's rollback served."""
    from housing_platform.adapters.alias_moves import ROLLED_BACK_REASON_TAG
    from housing_platform.adapters.mlflow_registry import PREVIOUS_ALIAS
    from housing_platform.devtools import demo_rollout

    settings, defs, instance, _ = platform
    registry = ModelRegistry(settings.mlflow_tracking_uri, settings.mlflow_artifact_root)
    good = registry.champion().version
    closed, story, verdict = demo_rollout.run_rollback_scenario(settings, defs, instance, registry)
    assert closed, verdict
    assert registry.champion().version == good  # rolled back to the version the worse one replaced
    worse = str(max(int(v.version) for v in registry.client.search_model_versions(f"name='{registry.model_name}'")))
    assert worse != good and registry.version_by_alias(PREVIOUS_ALIAS) is None  # nothing left to roll back to
    assert "worse than previous" in registry.get_version(worse).tags.get(ROLLED_BACK_REASON_TAG, ""), story
    assert f"served v{good}" in story[-1], story
