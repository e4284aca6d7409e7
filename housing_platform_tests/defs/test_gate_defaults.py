"""Each gate default has one home in `core`; run config and check descriptions follow it."""

from __future__ import annotations

import dagster as dg
import pytest

from housing_platform.config.settings import HousingSettings
from housing_platform.core.drift import DriftConfig
from housing_platform.core.model_gate import RMSE_CHECK, SLICE_CHECK, GateThresholds
from housing_platform.core.validation import (
    ENOUGH_ROWS_CHECK,
    QUARANTINE_SHARE_CHECK,
    DataGateLimits,
    evaluate_data_gate,
    validate_housing_frame,
)
from housing_platform.defs.definitions import build_definitions
from housing_platform.defs.ingestion.checks import data_gate_descriptions
from housing_platform.defs.ingestion.config import ValidationGateConfig
from housing_platform.defs.monitoring.checks import drift_check_spec
from housing_platform.defs.monitoring.config import DriftReportConfig
from housing_platform.defs.training.checks import gate_check_descriptions
from housing_platform.defs.training.config import EvaluationConfig
from housing_platform_tests.support import changed_default


def _passed(results) -> dict[str, bool]:
    return {result.name: result.passed for result in results}


@pytest.fixture(scope="module")
def check_specs(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], dg.AssetCheckSpec]:
    home = tmp_path_factory.mktemp("gate_state")
    graph = build_definitions(HousingSettings(home=home, data_path=home / "d.csv")).resolve_asset_graph()
    return {(k.asset_key.to_user_string(), k.name): graph.get_check_spec(k) for k in graph.asset_check_keys}


# -- the promotion gate: core.model_gate.GateThresholds ------------------------------------------------


def test_evaluation_config_mirrors_the_gate_thresholds() -> None:
    assert EvaluationConfig().to_thresholds() == GateThresholds()
    assert set(EvaluationConfig.model_fields) == set(GateThresholds.model_fields)
    for name, field in GateThresholds.model_fields.items():
        assert EvaluationConfig.model_fields[name].description == field.description, name


def test_a_new_gate_default_reaches_the_run_config_and_the_check_description() -> None:
    with changed_default(GateThresholds, "max_rmse_dollars", 40_000.0):
        assert EvaluationConfig().max_rmse_dollars == 40_000.0
        assert "(default $40,000)" in gate_check_descriptions()[RMSE_CHECK]
    assert EvaluationConfig().max_rmse_dollars == 55_000.0
    assert "(default $55,000)" in gate_check_descriptions()[RMSE_CHECK]


def test_gate_check_descriptions_state_the_given_thresholds() -> None:
    strict = GateThresholds(max_slice_rmse_ratio=1.25, min_slice_rows=250)
    assert gate_check_descriptions(strict)[SLICE_CHECK] == (
        "No slice with ≥ 250 test rows has an RMSE above 1.25× the overall RMSE."
    )


def test_the_gate_checks_carry_the_descriptions_of_the_defaults(check_specs) -> None:
    for name, description in gate_check_descriptions().items():
        assert check_specs[("evaluation_report", name)].description == description, name


# -- the data gate: core.validation.DataGateLimits -----------------------------------------------------


def test_validation_config_mirrors_the_data_gate_limits() -> None:
    assert ValidationGateConfig().to_limits() == DataGateLimits()
    assert set(ValidationGateConfig.model_fields) == set(DataGateLimits.model_fields)


def test_a_new_data_gate_default_reaches_the_gate_the_run_config_and_the_description(districts) -> None:
    outcome = validate_housing_frame(districts)  # 200 valid rows
    assert not _passed(evaluate_data_gate(outcome))[ENOUGH_ROWS_CHECK]
    with changed_default(DataGateLimits, "min_rows", 150):
        assert ValidationGateConfig().min_rows == 150
        description = data_gate_descriptions()[ENOUGH_ROWS_CHECK]
        assert description == "At least 150 (configurable) valid rows remain to train on."
        assert _passed(evaluate_data_gate(outcome))[ENOUGH_ROWS_CHECK]
    with changed_default(DataGateLimits, "max_quarantine_share", 0.05):
        assert ValidationGateConfig().max_quarantine_share == 0.05
        assert data_gate_descriptions()[QUARANTINE_SHARE_CHECK].startswith("At most 5% ")
    assert ValidationGateConfig().min_rows == 1_000


def test_data_gate_limits_can_be_given_whole_or_by_name(districts) -> None:
    outcome = validate_housing_frame(districts)
    whole = evaluate_data_gate(outcome, DataGateLimits(min_rows=200))
    by_name = evaluate_data_gate(outcome, min_rows=200)
    assert whole == by_name and _passed(whole)[ENOUGH_ROWS_CHECK]
    with pytest.raises(ValueError, match="min_row"):
        evaluate_data_gate(outcome, min_row=200)


def test_the_validation_checks_carry_the_descriptions_of_the_defaults(check_specs) -> None:
    for name, description in data_gate_descriptions().items():
        assert check_specs[("validated_housing_data", name)].description == description, name


# -- monitoring: core.drift.DriftConfig ----------------------------------------------------------------


def test_drift_config_defaults_come_from_the_drift_module() -> None:
    assert DriftReportConfig().to_drift_config() == DriftConfig()
    with changed_default(DriftConfig, "drift_share", 0.3):
        assert DriftReportConfig().drift_share == 0.3
        assert "share of drifted features ≥ 0.3" in drift_check_spec().description

