"""Hyper-parameter search: Optuna's seeded TPE over the network's and the features' parameters.

Why Optuna (not Keras Tuner): the search space spans the *transformer* (cluster count, neighbourhood
k) as well as the network, and Optuna's define-by-run trials take any Python objective — here "fit the
transformer, train the network, return the validation RMSE" — where Keras Tuner's ``HyperModel``
builds only a Keras model. Its ``TPESampler(seed=...)`` makes the sequence of proposals
reproducible, and the study runs in memory (no storage to manage: trials go to MLflow instead).

The objective is the **validation** RMSE (early stopping uses the same rows, as in training): the
test split stays untouched for the evaluation report. The budget is bounded twice: ``n_trials`` and
``timeout_seconds`` (Optuna stops starting trials after it), and each trial's epochs by
``max_epochs``. The best configuration is a plain JSON document (``{"training": {...}, "features":
{...}}``) that ``trained_model`` and ``fitted_transformer`` use as their defaults.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from housing_platform.core.schema import TARGET_COLUMN

# The searched values. Architectures are named by their hidden units ("128-64").
HIDDEN_UNITS_CHOICES = ("64-32", "128-64", "128-64-32", "256-128")
NEIGHBOURS_CHOICES = (0, 10, 20, 40)
CLUSTER_CHOICES = (50, 100, 150)


class SearchConfig(BaseModel):
    """The search's budget and seed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_trials: int = Field(12, ge=1, description="Most trials to run.")
    timeout_seconds: float = Field(900.0, gt=0, description="No new trial starts after this many seconds.")
    max_epochs: int = Field(60, ge=1, description="Epoch limit of every trial (early stopping ends sooner).")
    seed: int = Field(42, description="Seed of the sampler (the proposals) and of every trial's training.")


def suggest(trial) -> dict:
    """One trial's configuration: ``{"training": TrainingConfig fields, "features": build_transformer kwargs}``."""
    return {
        "training": {
            "hidden_units": [int(u) for u in trial.suggest_categorical("hidden_units", HIDDEN_UNITS_CHOICES).split("-")],
            "activation": trial.suggest_categorical("activation", ("relu", "gelu", "elu")),
            "dropout": trial.suggest_float("dropout", 0.0, 0.3),
            "learning_rate": trial.suggest_float("learning_rate", 1e-3, 1e-2, log=True),
            "batch_size": trial.suggest_categorical("batch_size", (128, 256, 512)),
        },
        "features": {
            "n_clusters": trial.suggest_categorical("n_clusters", CLUSTER_CHOICES),
            "neighbours": trial.suggest_categorical("neighbours", NEIGHBOURS_CHOICES),
        },
    }


def run_search(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    config: SearchConfig | None = None,
    log: Callable[[str], None] | None = None,
    on_trial: Callable[[int, dict, float, float], None] | None = None,
) -> dict:
    """Search; returns ``{"best": configuration, "best_validation_rmse", "trials": [...]}``.

    ``on_trial(number, configuration, validation_rmse, seconds)`` is called after each finished trial
    (the asset logs it to MLflow as a child run); ``log`` gets one line per trial.
    """
    import optuna

    from housing_platform.core.features import fit_transformer, transform
    from housing_platform.core.metrics import regression_metrics
    from housing_platform.core.model import TrainingConfig, predict, train_model

    config = config or SearchConfig()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    y_train = train[TARGET_COLUMN].to_numpy(dtype=np.float64)
    y_val = validation[TARGET_COLUMN].to_numpy(dtype=np.float64)
    matrices: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}  # one transformer per feature configuration
    trials: list[dict] = []

    def objective(trial) -> float:
        candidate = suggest(trial)
        started = time.perf_counter()
        key = tuple(sorted(candidate["features"].items()))
        if key not in matrices:
            transformer = fit_transformer(train, **candidate["features"])
            matrices[key] = (transform(transformer, train, out_of_fold=True), transform(transformer, validation))
        x_train, x_val = matrices[key]
        training = TrainingConfig(**candidate["training"], epochs=config.max_epochs, seed=config.seed)
        result = train_model(x_train, y_train, x_val, y_val, training)
        rmse = regression_metrics(y_val, predict(result.model, x_val, training))["rmse"]
        seconds = time.perf_counter() - started
        trials.append({"number": trial.number, "configuration": candidate, "validation_rmse": rmse,
                       "seconds": seconds, "epochs_run": result.epochs_run})
        if log is not None:
            log(f"trial {trial.number + 1}/{config.n_trials}: validation RMSE ${rmse:,.0f} in {seconds:.1f} s "
                f"({result.epochs_run} epochs): {candidate}")
        if on_trial is not None:
            on_trial(trial.number, candidate, rmse, seconds)
        return rmse

    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=config.seed))
    study.optimize(objective, n_trials=config.n_trials, timeout=config.timeout_seconds)
    best = min(trials, key=lambda t: t["validation_rmse"])
    return {"best": best["configuration"], "best_validation_rmse": best["validation_rmse"], "trials": trials}
