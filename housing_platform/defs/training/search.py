"""The on-demand hyper-parameter search and the recorded best configuration it leaves behind.

`hyperparameter_search` (group `tuning`, in no job: materialize it when you want a search) runs
`core/search.py`'s seeded Optuna study on the current splits, logs every trial to MLflow as a child
run of one search run, and writes the best configuration to `<state>/search/best_configuration.json`
(`s3://<bucket>/<prefix>/search/best_configuration.json` in the production profile: the file store).
From then on `fitted_transformer` builds its features and `trained_model` trains with that
configuration by default; a field given in `trained_model`'s run config still wins over it.
"""

import json
from pathlib import Path

import dagster as dg
import pandas as pd

from housing_platform.adapters.file_store import FileStore, LocalFileStore
from housing_platform.core import splits
from housing_platform.core.search import SearchConfig, run_search
from housing_platform.defs.code_versions import asset_code_version
from housing_platform.defs.config_fields import field_from
from housing_platform.defs.metadata import COUNT, DOLLARS, numbers_metadata
from housing_platform.defs.resources import HousingStateResource, MLflowResource

SEARCH_FOLDER = "search"  # under the state folder (a file-store key folder)
BEST_FILE = "best_configuration.json"
BEST_KEY = f"{SEARCH_FOLDER}/{BEST_FILE}"


class SearchRunConfig(dg.Config):
    """The search's budget and seed (defaults: `core.search.SearchConfig`)."""

    n_trials: int = field_from(SearchConfig, "n_trials")
    timeout_seconds: float = field_from(SearchConfig, "timeout_seconds")
    max_epochs: int = field_from(SearchConfig, "max_epochs")
    seed: int = field_from(SearchConfig, "seed")


def recorded_best(files: FileStore | str | Path) -> dict | None:
    """The best configuration the last search recorded (``{"training": ..., "features": ...}``), or None.

    ``files``: the file store, or a state folder."""
    store = files if isinstance(files, FileStore) else LocalFileStore(files)
    text = store.read_text(BEST_KEY)
    return None if text is None else json.loads(text)


def effective_training_fields(recorded: dict | None, given: dict) -> dict:
    """TrainingConfig fields for a run: the recorded best's, overridden by the run config's explicit ``given``."""
    return {**((recorded or {}).get("training") or {}), **given}


def run_training_config(context: dg.AssetExecutionContext, defaults, files: FileStore | str | Path):
    """``trained_model``'s TrainingConfig: ``defaults`` < the recorded best < fields set in this run's config."""
    from housing_platform.core.model import TrainingConfig

    given = (context.run.run_config.get("ops", {}).get("trained_model", {}) or {}).get("config", {}) or {}
    given = {name: value for name, value in given.items() if name in TrainingConfig.model_fields}
    best = recorded_best(files)
    if best:
        context.log.info(f"hyper-parameters: the recorded search result, run config overriding {sorted(given) or 'none'}")
    return TrainingConfig(**{**defaults.model_dump(), **effective_training_fields(best, given)})


@dg.asset(
    group_name="tuning",
    kinds={"optuna", "mlflow"},
    owners=["team:ml-platform"],
    code_version=asset_code_version("hyperparameter_search", SearchRunConfig),
    tags={"stage": "tuning"},
)
def hyperparameter_search(
    context: dg.AssetExecutionContext,
    config: SearchRunConfig,
    housing_state: HousingStateResource,
    mlflow_tracking: MLflowResource,
    housing_splits: pd.DataFrame,
) -> dg.Output[dict]:
    """The best network and feature configuration a bounded, seeded search found; the default of the next training.

    Optuna's TPE sampler proposes hidden layers, activation, dropout, learning rate, batch size, cluster
    count and neighbourhood k; each trial fits the transformer on the train split and trains the network
    with early stopping, scored by its **validation** RMSE (the test split stays for the evaluation
    report). At most `n_trials` trials, none started after `timeout_seconds`. Each trial is an MLflow
    child run of the search's run; progress is logged here. Not part of the retraining job.
    """
    parts = {name: housing_splits[housing_splits[splits.SPLIT_COLUMN] == name].reset_index(drop=True)
             for name in ("train", "validation")}
    search = SearchConfig(**config.model_dump())
    registry = mlflow_tracking.registry()
    parent = registry.start_run(run_name=f"search-{context.run.run_id[:8]}",
                                tags={"dagster.run_id": context.run.run_id, "dagster.asset": "hyperparameter_search"})
    registry.log_params(parent, search.model_dump())

    def on_trial(number: int, candidate: dict, rmse: float, seconds: float) -> None:
        child = registry.start_run(run_name=f"trial-{number}", tags={"mlflow.parentRunId": parent,
                                                                     "dagster.run_id": context.run.run_id})
        registry.log_params(child, {**candidate["training"], **candidate["features"]})
        registry.log_metrics(child, {"validation_rmse": rmse, "seconds": seconds})
        registry.end_run(child)

    context.log.info(f"searching {search.n_trials} trials (at most {search.timeout_seconds:,.0f} s) on "
                     f"{len(parts['train']):,} train / {len(parts['validation']):,} validation rows")
    result = run_search(parts["train"], parts["validation"], search, log=context.log.info, on_trial=on_trial)
    registry.log_metrics(parent, {"best_validation_rmse": result["best_validation_rmse"]})
    registry.log_params(parent, {f"best_{k}": v for k, v in {**result["best"]["training"],
                                                             **result["best"]["features"]}.items()})
    registry.end_run(parent)
    recorded = {**result["best"], "validation_rmse": result["best_validation_rmse"], "mlflow_run_id": parent,
                "dagster_run_id": context.run.run_id}
    location = housing_state.files().write_text(BEST_KEY, json.dumps(recorded, indent=2, sort_keys=True))
    context.log.info(f"best: validation RMSE ${result['best_validation_rmse']:,.0f} with {result['best']}; "
                     f"recorded as the default of trained_model and fitted_transformer")
    trials = pd.DataFrame([{"trial": t["number"], "validation_rmse": t["validation_rmse"], "seconds": t["seconds"],
                            **t["configuration"]["training"], **t["configuration"]["features"]}
                           for t in result["trials"]])
    return dg.Output(
        recorded,
        metadata={
            **numbers_metadata({"best_validation_rmse": (result["best_validation_rmse"], DOLLARS),
                                "trials": (len(result["trials"]), COUNT)}),
            "best_configuration": dg.MetadataValue.json(result["best"]),
            "recorded_at": dg.MetadataValue.path(location),
            "trial_table": dg.MetadataValue.md(trials.to_markdown(index=False, floatfmt=",.4g")),
            "mlflow_run": dg.MetadataValue.url(registry.run_url(parent)),
        },
    )
