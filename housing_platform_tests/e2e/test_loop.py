"""End to end: the closed loop with a real server on loopback, real traffic and a real instance.

stable traffic → checks pass, the sensor requests nothing; shifted traffic with feedback → the
drift check fails → the sensor yields exactly one run request → executing it trains and registers
through the gate → the champion moves only if the gate passed (and the server swaps to it) → a
second sensor tick yields nothing.
"""

from __future__ import annotations

import dagster as dg
import pytest

from housing_platform.core import model_gate as gate
from housing_platform.devtools import loop
from housing_platform.defs.definitions import build_definitions
from housing_platform.adapters.mlflow_registry import ModelRegistry
from housing_platform.config.settings import HousingSettings
from housing_platform.devtools.simulator import simulate

pytestmark = pytest.mark.slow

SMALL_TRAINING = {
    "ops": {"trained_model": {"config": {"epochs": 3}}},
    "loggers": {"console": {"config": {"log_level": "WARNING"}}},
}
DRIFT_CHECK = "drift_report:no_feature_drift"
QUALITY_CHECK = "live_model_performance:no_quality_degradation"


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
            with loop.ModelServer(settings, poll_interval_seconds=1.0) as server:
                yield settings, defs, instance, server


def test_closed_loop_from_drift_to_a_gated_new_champion(platform) -> None:
    settings, defs, instance, server = platform
    registry = ModelRegistry(settings.mlflow_tracking_uri, settings.mlflow_artifact_root)
    assert server.serving_version() == "1"

    stable = simulate(server.url, "stable", 1_000, data_path=settings.data_path, feedback=True, seed=1)
    assert stable.failed_requests == 0 and stable.rows_scored == 1_000 and stable.model_versions == {"1"}
    calm = loop.check_results(loop.monitor(defs, instance))
    assert calm[DRIFT_CHECK].passed, calm[DRIFT_CHECK].description
    assert calm[QUALITY_CHECK].passed, calm[QUALITY_CHECK].description
    tick = loop.tick_sensor(defs, instance, None)
    assert tick.request is None

    shifted = simulate(server.url, "income_shift", 1_500, data_path=settings.data_path, feedback=True, seed=2)
    assert shifted.failed_requests == 0 and shifted.feedback_sent == 1_500
    alarmed = loop.check_results(loop.monitor(defs, instance))
    assert not alarmed[DRIFT_CHECK].passed
    assert "median_income" in alarmed[DRIFT_CHECK].metadata["drifted_columns"].value

    tick = loop.tick_sensor(defs, instance, tick.cursor)
    assert tick.request is not None
    assert tick.request.tags["housing_platform/trigger_check"] in {DRIFT_CHECK, QUALITY_CHECK}

    retraining = loop.retrain(defs, instance, tick.request, SMALL_TRAINING)
    training_data = retraining.asset_materializations_for_node("training_data")[0].metadata
    assert training_data["feedback_rows"].value == 2_500  # the labelled live traffic is learned from
    verdicts = {e.check_name: e.passed for e in retraining.get_asset_check_evaluations()
                if e.asset_key == dg.AssetKey("evaluation_report")}
    assert set(verdicts) == set(gate.GATE_CHECKS)
    report = defs.load_asset_value("evaluation_report", instance=instance)
    assert report["champion"]["version"] == "1"  # compared with the real champion on the same rows

    if all(verdicts.values()):
        assert retraining.success
        assert registry.champion().version == "2"
        assert server.wait_for_version("2", timeout_seconds=60)
        after = simulate(server.url, "stable", 200, data_path=settings.data_path, seed=3)
        assert after.model_versions == {"2"} and after.failed_requests == 0
    else:
        assert retraining.asset_materializations_for_node("registered_model_version") == []
        assert registry.champion().version == "1"

    assert loop.tick_sensor(defs, instance, tick.cursor).request is None
