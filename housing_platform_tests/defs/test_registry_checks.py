"""`registered_model_version` verifies the fast path before it moves `champion`: a refused version never
becomes champion, leaves `champion` and `previous` where they were and is tagged with the reason.

The real asset, a real MLflow registry (SQLite in a temp folder) and the tiny model's real files; the
upstream assets are stand-ins returning what the training assets would. The refused version is the
same model with a defect in its fast path (one scaler mean off by one standard deviation, as a port
could get wrong): the mutation is of the scorer only, MLflow and the pyfunc are real.
"""

from __future__ import annotations

import dataclasses
import json

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from housing_platform.adapters.mlflow_registry import (
    FAST_PATH_REASON_TAG,
    FAST_PATH_VERIFIED_TAG,
    PREVIOUS_ALIAS,
    PROMOTED_AT_TAG,
    ModelRegistry,
    model_artifacts,
    sha256_of,
)
from housing_platform.core.features import ENGINEERED_COLUMNS
from housing_platform.core.schema import FEATURE_COLUMNS
from housing_platform.core.splits import SPLIT_COLUMN
from housing_platform.defs.registry.assets import registered_model_version
from housing_platform.defs.registry.checks import FAST_PATH_CHECK, label_shift_check_result
from housing_platform.defs.resources import HousingStateResource, MLflowResource
from housing_platform.devtools.tiny_models import RegisteredModels
from housing_platform.scoring.batch import BATCH_PRECISION
from housing_platform.scoring.scorer import FastScorer
from housing_platform.scoring.verification import probe_frame

pytestmark = pytest.mark.slow


@dataclasses.dataclass
class Registry:
    """A fresh registry holding a champion and a previous version, and the tiny model's files."""

    resource: MLflowResource
    registry: ModelRegistry
    files: dict
    models: RegisteredModels


@pytest.fixture(scope="module")
def fresh(models: RegisteredModels, tmp_path_factory: pytest.TempPathFactory):
    import mlflow

    root = tmp_path_factory.mktemp("registry_checks")
    resource = MLflowResource(tracking_uri=f"sqlite:///{root / 'mlflow.db'}", artifact_root=(root / "art").as_uri())
    registry = resource.registry()
    folder = models.root / "files"
    files = {
        "transformer": folder / "transformer.skops",
        "network": folder / "network_v1.keras",
        "config": json.loads((folder / "training_config.json").read_text()),
    }
    example = models.train[list(FEATURE_COLUMNS)].head(5)
    for _ in range(2):  # v1 then v2 promoted: champion = 2, previous = 1
        version = registry.log_and_register(
            run_id=registry.start_run("registry-check-tests"),
            artifacts=model_artifacts(root, files["transformer"], files["network"], files["config"], models.train),
            input_example=example,
            predictions_example=np.full(len(example), 200_000.0),
            tags={},
        )
        registry.promote(version.version)
    yield Registry(resource, registry, files, models)
    mlflow.set_tracking_uri(models.tracking_uri)  # the session's registry again, for the tests after these
    mlflow.set_registry_uri(models.tracking_uri)


def _upstream(fresh: Registry) -> list[dg.AssetsDefinition]:
    """Stand-ins for the four training assets the registry asset reads."""
    splits = pd.concat([fresh.models.train.assign(**{SPLIT_COLUMN: "train"}),
                        fresh.models.test.assign(**{SPLIT_COLUMN: "test"})], ignore_index=True)

    @dg.asset(name="housing_splits")
    def housing_splits() -> pd.DataFrame:
        return splits

    @dg.asset(name="fitted_transformer")
    def fitted_transformer() -> dict:
        return {"path": str(fresh.files["transformer"]), "sha256": sha256_of(fresh.files["transformer"])}

    @dg.asset(name="trained_model")
    def trained_model(mlflow_tracking: MLflowResource) -> dict:
        return {"path": str(fresh.files["network"]), "sha256": sha256_of(fresh.files["network"]),
                "config": fresh.files["config"], "mlflow_run_id": mlflow_tracking.registry().start_run("candidate")}

    @dg.asset(name="evaluation_report")
    def evaluation_report() -> dict:
        return {"metrics": {"rmse": 60_000.0}}

    return [housing_splits, fitted_transformer, trained_model, evaluation_report]


def _register(fresh: Registry) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*_upstream(fresh), registered_model_version],
        resources={"mlflow_tracking": fresh.resource,
                   "housing_state": HousingStateResource(home=str(fresh.models.root / "state"), data_path="unused")},
        # rollout=direct: these tests are about the fast-path check in front of `champion`, not the canary.
        run_config={"ops": {"registered_model_version": {"config": {"rollout": "direct"}}}},
        raise_on_error=False,
    )


def _check(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == FAST_PATH_CHECK]
    return evaluation


def _state(registry: ModelRegistry) -> tuple[str, str, int]:
    versions = registry.client.search_model_versions(f"name='{registry.model_name}'")
    return registry.champion().version, registry.version_by_alias(PREVIOUS_ALIAS).version, len(versions)


def test_a_verified_version_becomes_champion_and_the_old_one_previous(fresh: Registry, champion_pyfunc) -> None:
    champion_before, _, count_before = _state(fresh.registry)

    result = _register(fresh)

    assert result.success
    check = _check(result)
    assert check.passed and check.blocking
    scorer = FastScorer.from_python_model(champion_pyfunc.unwrap_python_model())  # the same transformer
    assert check.metadata["rows_compared_raw"].value == len(probe_frame(scorer)) + len(fresh.models.test)
    assert check.metadata["rows_outside_bound_raw"].value == 0
    # Both fast paths were compared: the server's (float64) and batch scoring's.
    assert (check.metadata["server_precision"].value, check.metadata["batch_precision"].value) == ("float64", BATCH_PRECISION)
    assert check.metadata["batch_rows_outside_bound_raw"].value == 0
    assert 0 < check.metadata["worst_deviation_to_bound_raw"].value <= 1.0
    champion, previous, count = _state(fresh.registry)
    assert count == count_before + 1 and champion == str(count)
    assert previous == champion_before
    tags = fresh.registry.get_version(champion).tags
    assert tags[FAST_PATH_VERIFIED_TAG] == "true" and tags[PROMOTED_AT_TAG]
    materialization = result.asset_materializations_for_node("registered_model_version")[0]
    assert materialization.metadata["promoted"].value is True


def _wrong_scaler(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every fast path derived from now on standardises housing_median_age with a mean one std too high."""
    derive = FastScorer.from_python_model.__func__

    def mutated(cls, python_model, precision: str = "float64") -> FastScorer:
        scorer = derive(cls, python_model, precision)
        means = np.asarray(scorer.scaler_means, dtype=np.float64).copy()
        j = ENGINEERED_COLUMNS.index("housing_median_age")
        means[j] += np.asarray(scorer.scaler_scales, dtype=np.float64)[j]
        return dataclasses.replace(scorer, scaler_means=means)

    monkeypatch.setattr(FastScorer, "from_python_model", classmethod(mutated))


def test_a_version_whose_fast_path_differs_is_refused_and_no_alias_moves(fresh: Registry, monkeypatch) -> None:
    champion_before, previous_before, count_before = _state(fresh.registry)
    _wrong_scaler(monkeypatch)

    result = _register(fresh)

    assert not result.success  # the blocking check fails the run
    check = _check(result)
    assert not check.passed and check.blocking
    refused = str(count_before + 1)
    assert check.metadata["rows_outside_bound_raw"].value > 0
    assert check.metadata["worst_deviation_to_bound_raw"].value > 10.0
    assert f"/{refused}:" in check.description and "differs from the registered model beyond" in check.description
    assert f"Version {refused} refused" in check.description
    assert _state(fresh.registry) == (champion_before, previous_before, count_before + 1)
    tags = fresh.registry.get_version(refused).tags
    assert tags[FAST_PATH_VERIFIED_TAG] == "false"
    assert "differs from the registered model" in tags[FAST_PATH_REASON_TAG] and "bound" in tags[FAST_PATH_REASON_TAG]
    assert PROMOTED_AT_TAG not in tags
    materialization = result.asset_materializations_for_node("registered_model_version")[0]
    assert materialization.metadata["promoted"].value is False
    assert materialization.metadata["aliases"].value == "none"


# -- label shift: the version is held for a person, and the check names both yardsticks' numbers --------


def _report(shifted: bool) -> dict:
    move = {"category": "INLAND", "champion_median": 108_400.0, "candidate_median": 135_500.0, "champion_rows": 6_500,
            "candidate_rows": 6_500, "compared": True, "change": 0.25}
    reason = ("label shift: the median price moved by more than 5% since the champion's training data: INLAND: median "
              "$108,400 → $135,500 (+25.0%, 6,500 → 6,500 rows)") if shifted else "no label shift: every median price within 5%"
    return {
        "metrics": {"rmse": 52_000.0},
        "champion": {"version": "1", "metrics": {"rmse": 67_000.0}},
        "golden_holdout": {"rows": 4_149, "metrics": {"rmse": 63_400.0}, "champion_metrics": {"rmse": 43_500.0}},
        "label_shift": {"shifted": shifted, "reason": reason, "moves": [move]},
    }


def test_a_held_version_warns_naming_the_label_moves_and_both_yardsticks() -> None:
    result = label_shift_check_result(_report(shifted=True), "2", held=True)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    assert result.description == (
        "Version 2 waits in `pending_approval`: `housing-platform approve 2` or `housing-platform reject 2`. "
        "Label shift: the median price moved by more than 5% since the champion's training data: INLAND: median "
        "$108,400 → $135,500 (+25.0%, 6,500 → 6,500 rows). Test split RMSE $52,000 vs champion v1 $67,000; golden "
        "holdout RMSE $63,400 vs champion $43,500 on 4,149 pinned rows."
    )
    assert result.metadata["median_change_INLAND_raw"].value == 0.25
    assert result.metadata["champion_golden_rmse_raw"].value == 43_500.0


def test_a_promoted_version_passes_the_label_check_with_its_numbers() -> None:
    result = label_shift_check_result(_report(shifted=False), "2", held=False)
    assert result.passed and result.description.startswith("No label shift: every median price within 5%. Test split")
