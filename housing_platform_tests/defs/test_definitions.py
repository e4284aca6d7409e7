"""The code location loads as the graph we mean: its assets, lineage, checks, automation and resources."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from housing_platform.config.settings import HousingSettings
from housing_platform.defs.definitions import build_definitions
from housing_platform.defs.io_manager import ParquetJsonIOManager
from housing_platform.defs.resources import CaptureStoreResource, HousingStateResource, MLflowResource

EXTERNAL_ASSETS = {"live_endpoint_captures"}
EXPECTED_GROUPS = {"ingestion", "labels", "training", "registry", "serving", "monitoring"}
# Every asset, its group and its upstream assets: the data flows one way, and the only edge back into
# training is the labelled traffic the monitoring side reads (through the capture store, not the graph).
EXPECTED_GRAPH = {
    "raw_housing_data": ("ingestion", set()),
    "validated_housing_data": ("ingestion", {"raw_housing_data"}),
    "housing_data_profile": ("ingestion", {"validated_housing_data"}),
    "labelled_traffic": ("labels", {"validated_housing_data"}),
    "training_data": ("training", {"validated_housing_data", "labelled_traffic"}),
    "housing_splits": ("training", {"training_data"}),
    "fitted_transformer": ("training", {"housing_splits"}),
    "trained_model": ("training", {"housing_splits", "fitted_transformer"}),
    "golden_holdout": ("training", {"validated_housing_data"}),
    "evaluation_report": ("training", {"housing_splits", "fitted_transformer", "trained_model", "golden_holdout"}),
    "registered_model_version": (
        "registry",
        {"housing_splits", "fitted_transformer", "trained_model", "evaluation_report"},
    ),
    "batch_predictions": ("serving", {"registered_model_version"}),
    "live_endpoint_captures": ("serving", {"registered_model_version"}),
    "inference_log": ("monitoring", {"live_endpoint_captures"}),
    "drift_report": ("monitoring", {"inference_log"}),
    "live_model_performance": ("monitoring", {"inference_log"}),
    "challenger_comparison": ("monitoring", {"live_endpoint_captures"}),
    "alias_history": ("registry", {"registered_model_version"}),
    "drift_history": ("monitoring", {"drift_report", "live_model_performance"}),
}
EXPECTED_CHECKS = {
    "validated_housing_data": {
        "quarantine_share_within_limit",
        "duplicate_share_within_limit",
        "null_share_within_allowance",
        "enough_rows",
    },
    "labelled_traffic": {"labels_within_schema", "label_volume_within_limit", "labels_consistent_with_trusted_data"},
    "evaluation_report": {"rmse_within_limit", "beats_linear_baseline", "no_regression_vs_champion", "no_weak_slice",
                          "no_regression_on_golden_holdout"},
    "registered_model_version": {"fast_path_matches_registered_model", "label_distribution_matches_champion"},
    "live_endpoint_captures": {"endpoint_serves_champion"},
    "drift_report": {"no_feature_drift"},
    "live_model_performance": {"no_quality_degradation"},
    "challenger_comparison": {"challenger_not_worse_than_champion"},
}
BLOCKING_CHECKS_ON = {"validated_housing_data", "labelled_traffic", "evaluation_report", "registered_model_version"}
# A label shift holds the version for a person (a warning); it blocks nothing.
NON_BLOCKING_CHECKS = {"label_distribution_matches_champion"}
EXPECTED_JOBS = {
    "retraining_job": {
        "labelled_traffic",
        "golden_holdout",
        "training_data",
        "housing_splits",
        "fitted_transformer",
        "trained_model",
        "evaluation_report",
        "registered_model_version",
        "alias_history",
    },
    "monitoring_job": {"inference_log", "drift_report", "live_model_performance", "challenger_comparison"},
    "alias_history_job": {"alias_history"},
    "drift_history_job": {"drift_history"},
}


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> HousingSettings:
    home = tmp_path_factory.mktemp("definitions_state")
    return HousingSettings(home=home, data_path=home / "districts.csv")


@pytest.fixture(scope="module")
def defs(settings: HousingSettings) -> dg.Definitions:
    return build_definitions(settings)


def _names(keys) -> set[str]:
    return {key.to_user_string() for key in keys}


def test_definitions_load_and_resolve(defs: dg.Definitions) -> None:
    dg.Definitions.validate_loadable(defs)


def test_the_graph_has_every_asset_in_its_group_with_its_upstreams(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    assert _names(graph.get_all_asset_keys()) == set(EXPECTED_GRAPH)
    for name, (group, upstream) in EXPECTED_GRAPH.items():
        node = graph.get(dg.AssetKey(name))
        assert node.group_name == group, name
        assert _names(node.parent_keys) == upstream, name


def test_every_asset_is_documented(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        name = key.to_user_string()
        # The live endpoint is the one asset Dagster does not materialize; any other external
        # asset means a dependency name is misspelled.
        assert not node.is_external or name in EXTERNAL_ASSETS, f"{name} is external: a misspelled dependency?"
        assert node.description and len(node.description) > 80, f"{name} needs a real description"
        assert node.group_name in EXPECTED_GROUPS, name
        assert node.owners, name
        assert node.code_version or node.is_external, name
        assert node.kinds, name


def test_every_check_targets_an_asset_of_the_graph(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    by_asset: dict[str, set[str]] = {}
    for check_key in graph.asset_check_keys:
        node = graph.get(check_key.asset_key)  # raises for a check on an asset that does not exist
        assert not node.is_external or check_key.asset_key.to_user_string() in EXTERNAL_ASSETS, check_key
        by_asset.setdefault(check_key.asset_key.to_user_string(), set()).add(check_key.name)
    assert by_asset == EXPECTED_CHECKS


def test_every_check_has_a_description(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    for check_key in graph.asset_check_keys:
        assert graph.get_check_spec(check_key).description, check_key


def test_the_gates_are_blocking_and_the_monitoring_checks_are_not(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    for check_key in graph.asset_check_keys:
        blocking = graph.get_check_spec(check_key).blocking
        expected = check_key.asset_key.to_user_string() in BLOCKING_CHECKS_ON and check_key.name not in NON_BLOCKING_CHECKS
        assert blocking == expected, check_key


def test_validation_checks_are_blocking(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    validated = dg.AssetKey("validated_housing_data")
    specs = [graph.get_check_spec(k) for k in graph.asset_check_keys if k.asset_key == validated]
    assert len(specs) == 4 and all(spec.blocking for spec in specs)


def test_jobs_select_the_retraining_and_monitoring_assets(defs: dg.Definitions) -> None:
    named = {job.name for job in defs.get_repository_def().get_all_jobs() if not job.name.startswith("__")}
    assert named == set(EXPECTED_JOBS)
    for name, assets in EXPECTED_JOBS.items():
        assert _names(defs.resolve_job_def(name).asset_layer.selected_asset_keys) == assets, name


def test_the_sensor_launches_retraining_and_the_schedule_monitoring(defs: dg.Definitions) -> None:
    assert [(s.name, s.job_name) for s in defs.sensors] == [("retrain_on_drift", "retraining_job"),
                                                            ("rollback_on_live_quality", "alias_history_job")]
    assert [(s.name, s.job_name, s.cron_schedule) for s in defs.schedules] == [
        ("hourly_monitoring", "monitoring_job", "0 * * * *"),
        ("hourly_drift_history", "drift_history_job", "15 * * * *"),
    ]
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in defs.sensors)
    assert all(s.default_status == dg.DefaultScheduleStatus.RUNNING for s in defs.schedules)


def test_resources_are_bound_to_the_settings(defs: dg.Definitions, settings: HousingSettings) -> None:
    resources = defs.resources
    assert set(resources) == {"housing_state", "mlflow_tracking", "capture_store", "io_manager"}
    state = resources["housing_state"]
    assert isinstance(state, HousingStateResource)
    assert (Path(state.home), Path(state.data_path)) == (settings.home, settings.data_path)
    tracking = resources["mlflow_tracking"]
    assert isinstance(tracking, MLflowResource)
    assert tracking.tracking_uri == settings.mlflow_tracking_uri
    assert tracking.artifact_root == settings.mlflow_artifact_root
    capture = resources["capture_store"]
    assert isinstance(capture, CaptureStoreResource) and capture.url == settings.capture_url
    io_manager = resources["io_manager"]
    assert isinstance(io_manager, ParquetJsonIOManager)
    assert Path(io_manager.base_dir) == settings.storage_dir and io_manager.s3 is None


def test_every_asset_needs_only_bound_resources(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if node.is_external:
            continue
        required = node.assets_def.required_resource_keys
        assert required <= set(defs.resources), (key.to_user_string(), required - set(defs.resources))
