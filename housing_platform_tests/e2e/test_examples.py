"""The scripts under `examples/` run against a real platform state and do what their docstrings say.

`examples/read_drift_reports.py` gets a state with a small trained champion and three days of
captured traffic (a calm day, a day too quiet to judge, a day with shifted incomes), monitored day by
day, inside a week where the other days have no drift report at all.
"""

from __future__ import annotations

import importlib.util
from datetime import datetime, time, timedelta, timezone
from pathlib import Path

import dagster as dg
import pytest

from housing_platform.adapters.capture.records import CaptureRecord
from housing_platform.adapters.capture.store import CaptureStore
from housing_platform.adapters.mlflow_registry import ModelRegistry
from housing_platform.config.settings import PROJECT_ROOT, HousingSettings
from housing_platform.core.schema import FEATURE_COLUMNS
from housing_platform.defs.definitions import build_definitions
from housing_platform.devtools import loop
from housing_platform.devtools.loop import QUIET_LOGS, SMALL_TRAINING
from housing_platform.devtools.scenarios import make_scenario
from housing_platform.devtools.simulator import held_out_districts

pytestmark = pytest.mark.slow

# Days before the last day of the week → (scenario, rows). 50 rows is below drift's min_rows (200).
TRAFFIC = {5: ("stable", 400), 4: ("stable", 50), 2: ("income_shift", 400)}


def load_example(name: str):
    path = PROJECT_ROOT / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"examples_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def drift_week(tmp_path_factory: pytest.TempPathFactory):
    """A file-backed state whose week ending today has drift reports on two days (and an empty one)."""
    home = tmp_path_factory.mktemp("examples_state")
    last_day = datetime.now(timezone.utc).date()
    with pytest.MonkeyPatch.context() as patch:
        for variable in ("MLFLOW_TRACKING_URI", "HOUSING_CAPTURE_URL", "HOUSING_DATA_PATH"):
            patch.delenv(variable, raising=False)
        patch.setenv("HOUSING_HOME", str(home))
        settings = HousingSettings.from_env()
        patch.setenv("DAGSTER_HOME", str(settings.ensure_dagster_home()))
        defs = build_definitions(settings)
        with dg.DagsterInstance.get() as instance:
            assert loop.train(defs, instance, SMALL_TRAINING).success
            champion = ModelRegistry(settings.mlflow_tracking_uri, settings.mlflow_artifact_root).champion()
            model = ModelRegistry(settings.mlflow_tracking_uri, settings.mlflow_artifact_root).load_pyfunc(
                champion.model_uri
            )
            districts = held_out_districts(settings.data_path)
            store = CaptureStore(settings.capture_url)
            try:
                for seed, (days_before, (scenario, rows)) in enumerate(sorted(TRAFFIC.items(), reverse=True)):
                    day = last_day - timedelta(days=days_before)
                    traffic = make_scenario(districts, scenario, rows, seed)
                    predictions = model.predict(traffic[list(FEATURE_COLUMNS)])
                    noon = datetime.combine(day, time(12), tzinfo=timezone.utc)
                    store.insert_captures([
                        CaptureRecord.from_features(features, prediction=float(prediction),
                                                    model_version=champion.version, latency_ms=1.0, captured_at=noon)
                        for features, prediction in zip(traffic[list(FEATURE_COLUMNS)].to_dict("records"),
                                                        predictions)
                    ])
                    assert loop.monitor(defs, instance, day.isoformat(), run_config=QUIET_LOGS).success
            finally:
                store.dispose()
        yield defs, last_day.isoformat()


def test_drift_reports_of_a_week_load_with_missing_days_skipped(drift_week) -> None:
    defs, last_day = drift_week
    example = load_example("read_drift_reports")
    keys = example.week_partition_keys(last_day, 7)
    assert len(keys) == 7 and keys[-1] == last_day

    with dg.DagsterInstance.get() as instance:
        reports, skipped = example.load_drift_reports(defs, instance, keys)

    calm, shifted = keys[6 - 5], keys[6 - 2]
    assert sorted(reports["partition"].unique()) == [calm, shifted]
    assert set(skipped) == set(keys) - {calm, shifted}  # no report, and the too-quiet day's empty one
    assert set(reports["column"]) == {*FEATURE_COLUMNS, "prediction"}
    drifted = reports.set_index(["partition", "column"])["drifted"]
    assert bool(drifted[(shifted, "median_income")]) and not bool(drifted[(calm, "median_income")])


def test_drift_report_script_prints_scores_and_writes_the_plot(drift_week, tmp_path: Path, capsys) -> None:
    _, last_day = drift_week
    example = load_example("read_drift_reports")
    output = tmp_path / "plots" / "drift_week.png"

    assert example.main(["--end", last_day, "--days", "7", "--output", str(output)]) == 0

    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and output.stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "no drift report for 5 of 7 day(s)" in printed
    assert "median_income" in printed and f"wrote {output}" in printed


def test_drift_report_script_says_so_when_there_is_nothing_to_plot(drift_week, tmp_path: Path, capsys) -> None:
    example = load_example("read_drift_reports")
    assert example.main(["--end", "2026-01-03", "--days", "3", "--output", str(tmp_path / "none.png")]) == 1
    assert "nothing to plot" in capsys.readouterr().out
    assert not (tmp_path / "none.png").exists()


def test_partition_keys_of_a_week_end_on_the_given_day() -> None:
    example = load_example("read_drift_reports")
    assert example.week_partition_keys("2026-03-02", 3) == ["2026-02-28", "2026-03-01", "2026-03-02"]
    assert example.week_partition_keys("2026-03-02", 1) == ["2026-03-02"]
