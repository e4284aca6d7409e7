"""The training → evaluation → registry path on the real data, with a small config (3 epochs).

One Dagster instance and one MLflow registry live through the module, so the runs build on each
other like a user's: first model (no champion yet), a second model compared with a real champion,
then a run whose gate fails on an impossible threshold and must leave the champion where it is.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from housing_platform.adapters.capture import CaptureRecord, CaptureStore
from housing_platform.adapters.mlflow_registry import CHAMPION_ALIAS, MODEL_NAME, PREVIOUS_ALIAS, ModelRegistry
from housing_platform.config.settings import HousingSettings
from housing_platform.core import features
from housing_platform.core import model as keras_model
from housing_platform.core import model_gate as gate
from housing_platform.core.schema import FEATURE_COLUMNS, TARGET_COLUMN
from housing_platform.core.splits import SPLIT_COLUMN
from housing_platform.defs.definitions import build_definitions
from housing_platform.defs.ingestion.checks import VALIDATION_CHECKS
from housing_platform.defs.io_manager import ParquetJsonIOManager
from housing_platform.defs.labels.assets import labelled_traffic
from housing_platform.defs.registry.checks import FAST_PATH_CHECK, LABEL_SHIFT_CHECK
from housing_platform.defs.resources import CaptureStoreResource, MLflowResource
from housing_platform.defs.training.assets import training_data
from housing_platform_tests.factories import make_districts
from housing_platform_tests.support import bare_numbers, raw_numbers

pytestmark = pytest.mark.slow

TRAINING_GROUPS = dg.AssetSelection.groups("ingestion", "labels", "training", "registry")


def quick_config(seed: int = 42, **evaluation) -> dict:
    return {
        "ops": {
            "trained_model": {"config": {"epochs": 3, "seed": seed}},
            "evaluation_report": {"config": evaluation},
            # These tests are about the gate and the champion it is compared with: a passing version is
            # promoted at once (the default canary rollout is tested in defs/test_rollout_decisions.py).
            "registered_model_version": {"config": {"rollout": "direct"}},
        },
        "loggers": {"console": {"config": {"log_level": "WARNING"}}},
    }


class Pipeline:
    """Runs the graph against one instance and one state folder, remembering each result."""

    def __init__(self, settings: HousingSettings, instance: dg.DagsterInstance):
        self.settings = settings
        self.instance = instance
        self.defs = build_definitions(settings)
        self.registry = ModelRegistry(settings.mlflow_tracking_uri, settings.mlflow_artifact_root)

    def run(self, run_config: dict, selection=TRAINING_GROUPS) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [*self.defs.assets, *self.defs.asset_checks],
            selection=selection,
            instance=self.instance,
            resources=self.defs.resources,
            run_config=run_config,
            raise_on_error=False,
        )

    def value(self, asset: str):
        return self.defs.load_asset_value(asset, instance=self.instance)

    def version_numbers(self) -> list[int]:
        return sorted(int(v.version) for v in self.registry.client.search_model_versions(f"name='{MODEL_NAME}'"))


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("training_state")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOUSING_HOME", str(home))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        settings = HousingSettings.from_env()
        with dg.instance_for_test() as instance:
            yield Pipeline(settings, instance)


@pytest.fixture(scope="module")
def first_run(pipeline: Pipeline):
    result = pipeline.run(quick_config())
    assert result.success, [e.event_specific_data.error for e in result.all_events if e.is_step_failure]
    return result


def checks_of(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations() if e.asset_key == dg.AssetKey(asset)}


def test_first_model_is_registered_as_champion_with_champion_check_skipped(pipeline: Pipeline, first_run) -> None:
    checks = checks_of(first_run, "evaluation_report")
    assert set(checks) == set(gate.GATE_CHECKS) and all(c.passed for c in checks.values())
    assert "skipped: no champion" in checks[gate.CHAMPION_CHECK].description

    registered = pipeline.value("registered_model_version")
    assert registered["version"] == "1" and CHAMPION_ALIAS in registered["aliases"]
    assert pipeline.registry.champion().version == "1"
    tags = pipeline.registry.get_version("1").tags
    for key in ("dagster_run_id", "raw_housing_data_version", "git_commit", "model_sha256", "transformer_sha256", "test_rmse"):
        assert tags.get(key), key
    assert tags["dagster_run_id"] == first_run.run_id
    assert len(tags["raw_housing_data_version"]) == 64  # the CSV's SHA-256


def test_evaluation_report_has_metrics_slices_baselines_and_plots(pipeline: Pipeline, first_run) -> None:
    report = pipeline.value("evaluation_report")
    assert set(report["metrics"]) >= {"rmse", "mae", "r2", "mape"}
    assert set(report["baselines"]) == {
        "median_per_ocean_proximity", "linear_regression", "hist_gradient_boosting", "textbook_random_forest"
    }
    materialization = first_run.asset_materializations_for_node("evaluation_report")[0]
    assert materialization.metadata["textbook_baseline_rmse_raw"].value == report["baselines"]["textbook_random_forest"]["rmse"]
    intervals = report["intervals"]  # calibrated on validation by trained_model, measured on the test rows
    assert intervals["calibration"]["level"] == 0.8 and intervals["overall"]["count"] == report["test_rows"]
    assert 0.0 <= intervals["overall"]["coverage"] <= 1.0 and intervals["overall"]["mean_width"] > 0
    assert {s["slice_by"] for s in intervals["slices"]} == {"all", "ocean_proximity", "median_income_quintile"}
    assert materialization.metadata["interval_coverage_raw"].value == intervals["overall"]["coverage"]
    slice_kinds = {s["slice_by"] for s in report["slices"]}
    assert {"ocean_proximity", "median_income_quintile"} <= slice_kinds
    for path in report["plots"].values():
        assert Path(path).exists() and Path(path).is_relative_to(pipeline.settings.home)
    assert "data:image/png;base64," in materialization.metadata["plots"].value


def test_every_number_a_training_run_records_reads_for_people_beside_its_raw_value(first_run) -> None:
    examined = {e.asset_key.to_user_string(): e.event_specific_data.materialization.metadata
                for e in first_run.get_asset_materialization_events()}
    examined.update({e.check_name: e.metadata for e in first_run.get_asset_check_evaluations()})
    # Not vacuous: the run's assets and its gates' checks were examined, with numbers for tools among them.
    assert {"validated_housing_data", "training_data", "evaluation_report", "registered_model_version",
            *gate.GATE_CHECKS, FAST_PATH_CHECK, LABEL_SHIFT_CHECK, *VALIDATION_CHECKS} <= set(examined)
    assert raw_numbers(examined[FAST_PATH_CHECK]) and raw_numbers(examined[gate.RMSE_CHECK])
    assert {name: bare_numbers(metadata) for name, metadata in examined.items() if bare_numbers(metadata)} == {}


def test_transformer_is_fit_on_the_train_split_only(pipeline: Pipeline, first_run) -> None:
    splits = pipeline.value("housing_splits")
    transformer = features.load_transformer(pipeline.value("fitted_transformer")["path"])
    statistics = features.fitted_statistics(transformer)
    train = splits[splits[SPLIT_COLUMN] == "train"]
    assert statistics["imputer_medians"]["total_bedrooms"] == pytest.approx(train["total_bedrooms"].median())
    assert statistics["n_samples_fit"] == len(train)
    # The scaler's mean of log(population) is the train rows' mean, not the whole table's.
    assert statistics["scaler_means"]["log_population"] == pytest.approx(np.log(train["population"]).mean(), rel=1e-9)
    assert statistics["scaler_means"]["log_population"] != pytest.approx(np.log(splits["population"]).mean(), rel=1e-6)


def test_champion_pyfunc_predicts_what_the_in_memory_pipeline_predicts(pipeline: Pipeline, first_run) -> None:
    splits = pipeline.value("housing_splits")
    test = splits[splits[SPLIT_COLUMN] == "test"].reset_index(drop=True)
    trained = pipeline.value("trained_model")
    transformer = features.load_transformer(pipeline.value("fitted_transformer")["path"])
    network = keras_model.load_model(trained["path"])
    in_memory = keras_model.predict(network, features.transform(transformer, test))

    loaded = pipeline.registry.load_pyfunc(f"models:/{MODEL_NAME}@{CHAMPION_ALIAS}")
    served = np.asarray(loaded.predict(test[list(FEATURE_COLUMNS)]))
    assert served.shape == (len(test),)
    np.testing.assert_allclose(served, in_memory, rtol=1e-6)


def test_second_model_is_compared_with_the_real_champion_and_replaces_it(pipeline: Pipeline, first_run) -> None:
    # A different seed gives a different network; generous regression allowances make it pass.
    result = pipeline.run(quick_config(seed=7, max_regression_vs_champion=1.0, max_golden_regression_vs_champion=1.0))
    assert result.success
    report = pipeline.value("evaluation_report")
    champion = report["champion"]
    assert champion["version"] == "1"
    # The comparison is between two different models, on the same test rows.
    assert champion["model_sha256"] == pipeline.registry.get_version("1").tags["model_sha256"]
    assert champion["model_sha256"] != report["candidate_model_sha256"]
    assert champion["metrics"]["rmse"] != pytest.approx(report["metrics"]["rmse"], rel=1e-9)
    assert champion["metrics"]["count"] == report["test_rows"]
    verdict = checks_of(result, "evaluation_report")[gate.CHAMPION_CHECK]
    assert verdict.passed and "champion v1" in verdict.description

    assert pipeline.registry.champion().version == "2"
    assert pipeline.registry.version_by_alias(PREVIOUS_ALIAS).version == "1"


def test_failed_gate_registers_nothing_and_keeps_the_champion(pipeline: Pipeline, first_run) -> None:
    champion_before = pipeline.registry.champion()
    versions_before = pipeline.version_numbers()
    result = pipeline.run(quick_config(max_rmse_dollars=1.0))
    assert not result.success
    checks = checks_of(result, "evaluation_report")
    assert not checks[gate.RMSE_CHECK].passed
    assert result.asset_materializations_for_node("registered_model_version") == []
    assert pipeline.version_numbers() == versions_before
    assert pipeline.registry.champion().version == champion_before.version


def test_retraining_on_identical_inputs_reproduces_the_metrics(pipeline: Pipeline, first_run) -> None:
    first = first_run.asset_materializations_for_node("evaluation_report")[0].metadata
    again = pipeline.run(quick_config(max_rmse_dollars=1.0))  # same seed as the first run; stop at the gate
    second = again.asset_materializations_for_node("evaluation_report")[0].metadata
    for metric in ("rmse", "mae", "r2", "mape"):  # the raw values beside the ones rendered for people
        assert second[f"{metric}_raw"].value == pytest.approx(first[f"{metric}_raw"].value, rel=1e-6, abs=1e-9), metric


def test_training_data_adds_labelled_captures_that_pass_the_schema(pipeline: Pipeline, first_run) -> None:
    training = pipeline.value("training_data")
    assert set(training["source"]) == {"base"}  # no live traffic in this state folder
    assert len(training) == 20_637
    assert set(pd.unique(training[TARGET_COLUMN].isna())) == {False}


def test_training_data_appends_labelled_captures_with_their_fed_back_values(tmp_path: Path) -> None:
    """Captures with feedback become rows (features + true value); unlabelled or invalid ones do not."""
    base = make_districts(50)
    captured = make_districts(6, seed=3)
    captured.loc[4, "median_income"] = 40.0  # breaks median_income < 16: labelled, but rejected
    truths = [150_000.0, 275_500.0, 410_000.0, 99_000.0, 200_000.0]  # row 5 gets no feedback
    store = CaptureStore(f"sqlite:///{tmp_path / 'capture.db'}")
    try:
        records = [
            CaptureRecord.from_features(row, prediction=123_456.0, model_version="1", latency_ms=1.0)
            for row in captured[list(FEATURE_COLUMNS)].to_dict("records")
        ]
        store.insert_captures(records)
        store.record_feedback([(record.request_id, truth) for record, truth in zip(records, truths)])
    finally:
        store.dispose()

    @dg.asset(name="validated_housing_data")
    def validated_stand_in() -> pd.DataFrame:
        return base

    # Labels reach training_data through the label gate (labelled_traffic), which holds the invalid one;
    # its schema check allows that 1-in-5 share here (default 1%). No champion: consistency not judged.
    result = dg.materialize(
        [validated_stand_in, labelled_traffic, training_data],
        resources={
            "capture_store": CaptureStoreResource(url=f"sqlite:///{tmp_path / 'capture.db'}"),
            "mlflow_tracking": MLflowResource(
                tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=(tmp_path / "artifacts").as_uri()
            ),
            "io_manager": ParquetJsonIOManager(base_dir=str(tmp_path / "storage")),
        },
        run_config={"ops": {"labelled_traffic": {"config": {"max_schema_failure_share": 0.5}}}},
    )

    assert result.success
    frame = pd.read_parquet(tmp_path / "storage" / "training_data.parquet")
    assert list(frame["source"]).count("base") == 50
    pd.testing.assert_frame_equal(frame[frame["source"] == "base"].drop(columns="source"), base)
    appended = frame[frame["source"] == "feedback"].drop(columns="source").reset_index(drop=True)
    expected = captured.loc[[0, 1, 2, 3], list(FEATURE_COLUMNS)].assign(**{TARGET_COLUMN: truths[:4]})
    pd.testing.assert_frame_equal(
        appended.sort_values(TARGET_COLUMN).reset_index(drop=True)[expected.columns],
        expected.sort_values(TARGET_COLUMN).reset_index(drop=True),
        check_dtype=False,
    )
    metadata = result.asset_materializations_for_node("training_data")[0].metadata
    assert (metadata["base_rows_raw"].value, metadata["feedback_rows_raw"].value) == (50, 4)
    assert metadata["feedback_rows_rejected_raw"].value == 0  # held upstream by labelled_traffic
    held = result.asset_materializations_for_node("labelled_traffic")[0].metadata
    assert (held["admitted_now_raw"].value, held["held_now_raw"].value) == (4, 1)
