"""`drift_report`'s check `no_feature_drift` in Dagster: which rule failed it, said in its description and
metadata; and the new drift defaults, changed in `core.drift.DriftConfig`, reach the run config and the
check's description.

The asset runs for real against a throwaway MLflow registry holding one version with its training
reference; `inference_log` is stood in for by an asset of the same key returning the day's traffic.
"""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from housing_platform.adapters.mlflow_registry import MODEL_NAME, REFERENCE_ARTIFACT, ModelRegistry
from housing_platform.config.settings import DEFAULT_DATA_PATH
from housing_platform.core.drift import DriftConfig
from housing_platform.core.validation import read_housing_csv, validate_housing_frame
from housing_platform.defs.monitoring.assets import drift_report
from housing_platform.defs.monitoring.checks import DRIFT_CHECK, drift_check_description, drift_check_spec
from housing_platform.defs.monitoring.config import DriftReportConfig
from housing_platform.defs.monitoring.partitions import daily_partitions
from housing_platform.defs.resources import HousingStateResource, MLflowResource
from housing_platform_tests.support import changed_default

DAY = daily_partitions.get_first_partition_key()


def with_prediction(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(prediction=45_000.0 + 42_000.0 * frame["median_income"])


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory):
    """A registry whose champion (version 1) carries 3,000 training rows as its reference; held-out rows."""
    import mlflow

    root = tmp_path_factory.mktemp("drift_check")
    valid = validate_housing_frame(read_housing_csv(DEFAULT_DATA_PATH)).valid
    order = np.random.default_rng(42).permutation(len(valid))
    reference = with_prediction(valid.iloc[order[:3_000]].reset_index(drop=True))
    held_out = valid.iloc[order[-2_000:]].reset_index(drop=True)

    previous_uri = mlflow.get_tracking_uri()
    registry = ModelRegistry(f"sqlite:///{root / 'mlflow.db'}", (root / "artifacts").as_uri())
    run_id = registry.start_run("reference")
    path = root / "reference.parquet"
    reference.to_parquet(path, index=False)
    registry.log_artifact(run_id, path, REFERENCE_ARTIFACT.rsplit("/", 1)[0])
    registry.end_run(run_id)
    registry.client.create_registered_model(MODEL_NAME)
    version = registry.client.create_model_version(MODEL_NAME, source=(root / "model").as_uri(), run_id=run_id)
    registry.promote(version.version)
    resources = {
        "housing_state": HousingStateResource(home=str(root / "state"), data_path=str(root / "unused.csv")),
        "mlflow_tracking": MLflowResource(tracking_uri=registry.tracking_uri, artifact_root=registry.artifact_root),
    }
    yield resources, held_out, version.version
    mlflow.set_tracking_uri(previous_uri)
    mlflow.set_registry_uri(previous_uri)


def evaluate(platform, traffic: pd.DataFrame) -> dg.AssetCheckEvaluation:
    """Materialize one day of `drift_report` on ``traffic`` and return its check's evaluation."""
    resources, _, version = platform

    @dg.asset(name="inference_log", partitions_def=daily_partitions)
    def day_of_traffic() -> pd.DataFrame:
        return traffic.assign(model_version=version)

    result = dg.materialize([day_of_traffic, drift_report], partition_key=DAY, resources=resources)
    assert result.success
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.check_name == DRIFT_CHECK
    return evaluation


def test_a_strong_scale_change_of_a_non_key_feature_fails_the_check_naming_it(platform) -> None:
    traffic = platform[1].sample(1_000, random_state=1).reset_index(drop=True)
    evaluation = evaluate(platform, with_prediction(traffic.assign(population=traffic["population"] * 0.5)))
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    metadata = {key: value.value for key, value in evaluation.metadata.items()}
    assert metadata["rules_fired"] == "severe_single_feature"
    assert metadata["severe_feature_drift"] == "population" and metadata["key_feature_drift"] == "none"
    severe = metadata["severe_thresholds"]["population"]
    assert severe == pytest.approx(3 * 0.1)  # 1,000 rows: the noise floor is below the configured 0.1
    score = metadata["scores"]["population"]
    assert score >= severe
    assert evaluation.description.startswith("drift: severe_single_feature: ")
    assert f"population scored {score:.3f} ≥ its severe threshold {severe:.3f}" in evaluation.description


def test_stable_traffic_passes_and_prediction_drift_alone_fails(platform) -> None:
    traffic = with_prediction(platform[1].sample(1_000, random_state=2).reset_index(drop=True))
    stable = evaluate(platform, traffic)
    assert stable.passed, stable.description
    assert stable.metadata["rules_fired"].value == "none"

    shifted = evaluate(platform, traffic.assign(prediction=traffic["prediction"] * 1.25))
    assert not shifted.passed
    assert shifted.metadata["rules_fired"].value == "prediction_drift"
    assert shifted.metadata["drifted_columns"].value == "none"
    assert shifted.description.startswith("drift: prediction_drift: prediction drifted (score ")


def test_the_run_config_carries_the_new_drift_settings_to_the_drift_computation() -> None:
    assert DriftReportConfig().to_drift_config() == DriftConfig()
    given = DriftReportConfig(severe_drift_multiple=5.0, fail_on_prediction_drift=False).to_drift_config()
    assert given.severe_drift_multiple == 5.0 and given.fail_on_prediction_drift is False
    assert DriftReportConfig(severe_drift_multiple=None).to_drift_config().severe_drift_multiple is None


@pytest.mark.parametrize(
    "name, value, said, unsaid",
    [
        ("severe_drift_multiple", 4.0, "severe drift of any single feature (score ≥ 4× its threshold)", "3×"),
        ("severe_drift_multiple", None, "drift of the prediction", "severe"),
        ("fail_on_prediction_drift", False, "severe drift of any single feature", "prediction"),
    ],
)
def test_a_new_drift_default_reaches_the_run_config_and_the_check_description(name, value, said, unsaid) -> None:
    with changed_default(DriftConfig, name, value):
        assert getattr(DriftReportConfig(), name) == value
        assert getattr(DriftReportConfig().to_drift_config(), name) == value
        description = drift_check_spec().description
        assert said in description and unsaid not in description
    assert getattr(DriftReportConfig(), name) == DriftConfig.model_fields[name].default
    assert "severe drift of any single feature (score ≥ 3× its threshold) or drift of the prediction" in (
        drift_check_description()
    )


def test_drift_history_reads_the_days_verdict_and_says_no_run_answered_it(platform) -> None:
    """drift_history marks the day `no_feature_drift` failed (read from its JSON report) on a real registry."""
    from housing_platform.defs.monitoring.config import DriftHistoryConfig
    from housing_platform.defs.monitoring.history import drift_history
    from housing_platform.defs.monitoring.partitions import today_partition_key

    resources, held_out, version = platform
    today = today_partition_key()  # the history ends today
    traffic = with_prediction(held_out.sample(1_000, random_state=3).reset_index(drop=True))
    traffic = traffic.assign(median_income=traffic["median_income"] * 1.5)

    @dg.asset(name="inference_log", partitions_def=daily_partitions)
    def day_of_traffic() -> pd.DataFrame:
        return traffic.assign(model_version=version)

    with dg.instance_for_test() as instance:
        assert dg.materialize([day_of_traffic, drift_report], partition_key=today, resources=resources,
                              instance=instance).success
        result = dg.materialize(
            [drift_history], resources=resources, instance=instance,
            run_config={"ops": {"drift_history": {"config": DriftHistoryConfig(days=2).model_dump()}}},
            selection=[drift_history],
        )
    assert result.success
    metadata = {key: value.value for key, value in result.asset_materializations_for_node("drift_history")[0].metadata.items()}
    assert metadata["failed_day_count"] == "1" and metadata["days_with_report"] == "1" and metadata["days"] == "2"
    assert f"| {today} | key_feature" in metadata["failed_days"] and "no retraining run answered it" in metadata["failed_days"]
    assert metadata["serving_now"] == f"version {version} (champion)"
    page = (resources["housing_state"].settings.reports_dir / "drift_history.html").read_text(encoding="utf-8")
    assert f"<tr class='failed' data-day='{today}'>" in page
