"""The README's configuration tables are generated from each default's one home and cannot drift."""

from __future__ import annotations

from housing_platform.cli.main import build_parser
from housing_platform.core.model_gate import GateThresholds
from housing_platform.core.validation import DataGateLimits
from housing_platform.devtools import reference_tables
from housing_platform.devtools.reference_tables import README, defaults_table, environment_table, render
from housing_platform_tests.support import changed_default


def test_the_readme_tables_are_what_the_code_says() -> None:
    text = README.read_text(encoding="utf-8")
    assert render(text) == text, "README.md is out of date: python -m housing_platform.devtools.reference_tables --write"


def test_every_generated_table_has_its_block_in_the_readme() -> None:
    text = README.read_text(encoding="utf-8")
    for name in reference_tables.generated_tables():
        assert f"<!-- generated: {name} " in text and f"<!-- end generated: {name} -->" in text


def test_the_environment_table_shows_derived_defaults_not_this_machine(monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////somewhere/else.db")
    monkeypatch.setenv("HOUSING_HOME", "/elsewhere")
    table = environment_table()
    assert "| `MLFLOW_TRACKING_URI` | `sqlite:///$HOUSING_HOME/mlflow/mlflow.db` |" in table
    assert "| `HOUSING_HOME` | `.housing/` in the repository |" in table
    assert "elsewhere" not in table


def test_a_data_gate_default_changed_in_its_home_reaches_the_cli_and_the_readme_table() -> None:
    with changed_default(DataGateLimits, "min_rows", 4_321):
        assert build_parser().parse_args(["validate", "x.csv"]).min_rows == 4_321
        assert "| `min_rows` | `4,321` |" in defaults_table(DataGateLimits)
    assert build_parser().parse_args(["validate", "x.csv"]).min_rows == DataGateLimits().min_rows != 4_321


def test_a_model_gate_default_changed_in_its_home_reaches_the_readme_table() -> None:
    with changed_default(GateThresholds, "max_rmse_dollars", 61_000.0):
        assert "| `max_rmse_dollars` | `61,000` |" in defaults_table(GateThresholds)
        assert render(README.read_text(encoding="utf-8")) != README.read_text(encoding="utf-8")
