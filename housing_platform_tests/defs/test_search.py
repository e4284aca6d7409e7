"""The on-demand hyper-parameter search: a tiny seeded budget, trials as MLflow child runs, the recorded
best configuration becoming the default of the next training (run config still overriding it)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from housing_platform.adapters.mlflow_registry import ModelRegistry
from housing_platform.core.splits import SPLIT_COLUMN, assign_split
from housing_platform.defs.io_manager import ParquetJsonIOManager
from housing_platform.defs.resources import HousingStateResource, MLflowResource
from housing_platform.defs.training.search import (
    effective_training_fields,
    hyperparameter_search,
    recorded_best,
)
from housing_platform_tests.factories import make_districts
from housing_platform_tests.support import bare_numbers, raw_numbers

pytestmark = pytest.mark.slow

TINY_BUDGET = {"n_trials": 2, "max_epochs": 1, "seed": 7}


def test_a_tiny_search_logs_its_trials_as_child_runs_and_records_the_best(tmp_path: Path) -> None:
    frame = make_districts(400, seed=2)
    frame[SPLIT_COLUMN] = assign_split(frame).to_numpy()

    @dg.asset(name="housing_splits")
    def splits_stand_in() -> pd.DataFrame:
        return frame

    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [splits_stand_in, hyperparameter_search],
        resources={
            "housing_state": HousingStateResource(home=str(tmp_path / "home"), data_path=str(tmp_path / "none.csv")),
            "mlflow_tracking": MLflowResource(tracking_uri=tracking, artifact_root=(tmp_path / "artifacts").as_uri()),
            "io_manager": ParquetJsonIOManager(base_dir=str(tmp_path / "storage")),
        },
        run_config={"ops": {"hyperparameter_search": {"config": TINY_BUDGET}}},
        instance=instance,
    )

    assert result.success
    value = result.output_for_node("hyperparameter_search")
    best = recorded_best(tmp_path / "home")
    assert best == value and set(best) >= {"training", "features", "validation_rmse", "mlflow_run_id"}
    assert set(best["features"]) == {"n_clusters", "neighbours"}
    # Two trials, each an MLflow child run of the search's run, with its validation RMSE.
    client = ModelRegistry(tracking, (tmp_path / "artifacts").as_uri()).client
    runs = client.search_runs([r.experiment_id for r in client.search_experiments()])
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == best["mlflow_run_id"]]
    assert len(children) == 2 and all("validation_rmse" in r.data.metrics for r in children)
    assert best["validation_rmse"] == min(r.data.metrics["validation_rmse"] for r in children)
    # Progress was logged per trial in the Dagster log.
    messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert any("trial 2/2: validation RMSE $" in m for m in messages)
    metadata = result.asset_materializations_for_node("hyperparameter_search")[0].metadata
    assert raw_numbers(metadata)["best_validation_rmse_raw"] == best["validation_rmse"]
    assert bare_numbers(metadata) == []


def test_the_recorded_best_is_the_default_and_run_config_overrides_it() -> None:
    recorded = {"training": {"hidden_units": [128, 64], "dropout": 0.2}, "features": {"neighbours": 10}}
    assert effective_training_fields(recorded, {}) == {"hidden_units": [128, 64], "dropout": 0.2}
    assert effective_training_fields(recorded, {"dropout": 0.0}) == {"hidden_units": [128, 64], "dropout": 0.0}
    assert effective_training_fields(None, {"dropout": 0.0}) == {"dropout": 0.0}
