"""Training: split → fitted transformer → trained Keras model → evaluation report (the gate).

Each asset is a thin shell: the work is done by plain modules (`splits`, `features`, `model`,
`evaluation`, `model_gate`) that the server and notebooks import too. Run config is in `config.py`, the
gate's blocking checks on `evaluation_report` in `checks.py`. Files (skops transformer, `.keras`
network, plots) go to `<state>/artifacts/<kind>/<run id>.*`, so a new run never overwrites what an
earlier version was trained from; asset values are small JSON documents pointing at them, through the
file store (`adapters/file_store.py`: `s3://<bucket>/<prefix>/...` in production, downloaded by each reader).
"""

import time

import dagster as dg
import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from housing_platform.adapters.mlflow_registry import TRAINING_LABEL_STATS_TAG, sha256_of
from housing_platform.core import conformal, evaluation, features, splits
from housing_platform.core.label_shift import compare_label_statistics, label_statistics, parse_statistics
from housing_platform.core.metrics import regression_metrics
from housing_platform.core.model_gate import evaluate_model_gate
from housing_platform.core.schema import FEATURE_COLUMNS, TARGET_COLUMN
from housing_platform.core.validation import validate_housing_frame
from housing_platform.defs.code_versions import asset_code_version
from housing_platform.defs.metadata import (
    COUNT,
    DOLLARS,
    SCORE,
    SECONDS,
    SHARE,
    column_schema_metadata,
    markdown_table,
    number_metadata,
    numbers_metadata,
    png_markdown,
)
from housing_platform.defs.resources import HousingStateResource, MLflowResource
from housing_platform.defs.training.config import EvaluationConfig, TrainingRunConfig
from housing_platform.defs.training.golden import golden_comparison
from housing_platform.defs.training.report_tables import comparison_table, evaluation_metadata
from housing_platform.defs.training.search import recorded_best, run_training_config

GROUP = "training"
OWNERS = ["team:ml-platform"]


def _frames(housing_splits: pd.DataFrame) -> splits.Splits:
    parts = {name: housing_splits[housing_splits[splits.SPLIT_COLUMN] == name].drop(columns=splits.SPLIT_COLUMN)
             for name in splits.SPLIT_NAMES}
    return splits.Splits(**{name: frame.reset_index(drop=True) for name, frame in parts.items()})


@dg.asset(
    group_name=GROUP,
    kinds={"pandas", "sqlalchemy"},
    owners=OWNERS,
    code_version=asset_code_version("training_data"),
    tags={"stage": "training"},
)
def training_data(
    context: dg.AssetExecutionContext, validated_housing_data: pd.DataFrame, labelled_traffic: pd.DataFrame
) -> dg.Output[pd.DataFrame]:
    """What the model learns from: the validated districts plus labelled live traffic.

    Live traffic becomes training data once its true value has come back through
    `POST /v1/feedback` **and passed the label gate** (`labelled_traffic`: schema, volume per source,
    consistency with the trusted test split; held labels never arrive here): the captured features
    with the fed-back `median_house_value`, validated again by the same pandera schema as the base
    data. This is how a retraining triggered by drift learns the new regime. The `source` column says
    where each row came from; metadata counts rows per source.
    """
    labelled = labelled_traffic[[*FEATURE_COLUMNS, TARGET_COLUMN]].reset_index(drop=True)
    rejected = 0
    if len(labelled):
        outcome = validate_housing_frame(labelled)
        rejected = len(outcome.quarantine)
        labelled = outcome.valid
    frame = pd.concat(
        [validated_housing_data.assign(source="base"), labelled.assign(source="feedback")], ignore_index=True
    )
    context.log.info(f"{len(validated_housing_data):,} base rows + {len(labelled):,} labelled captures ({rejected} rejected)")
    return dg.Output(
        frame,
        metadata={
            **numbers_metadata({
                "row_count": (len(frame), COUNT),
                "base_rows": (len(validated_housing_data), COUNT),
                "feedback_rows": (len(labelled), COUNT),
                "feedback_rows_rejected": (rejected, COUNT),
            }),
            **column_schema_metadata(frame),
        },
    )


@dg.asset(
    group_name=GROUP,
    kinds={"pandas"},
    owners=OWNERS,
    code_version=asset_code_version("housing_splits"),
    tags={"stage": "training"},
)
def housing_splits(context: dg.AssetExecutionContext, training_data: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    """The training data, each row labelled `train`, `validation` or `test` by a stable hash.

    A row's split is decided by a hash of its feature values (TFX-style hash buckets): 20% test, 10%
    validation (early stopping), 70% train. Appending rows never moves an existing row between
    splits, so the test set of a retrained model still contains every row the champion was tested on.
    Load it with `defs.load_asset_value("housing_splits")` and filter on the `split` column.
    """
    frame = training_data.copy()
    frame[splits.SPLIT_COLUMN] = splits.assign_split(frame).to_numpy()
    sizes = frame[splits.SPLIT_COLUMN].value_counts()
    target_mean = frame.groupby(splits.SPLIT_COLUMN)[TARGET_COLUMN].mean()
    context.log.info(f"split sizes: {sizes.to_dict()}")
    return dg.Output(
        frame,
        metadata={
            **numbers_metadata({
                **{f"{name}_rows": (int(sizes.get(name, 0)), COUNT) for name in splits.SPLIT_NAMES},
                **{f"{name}_target_mean": (float(target_mean.get(name, np.nan)), DOLLARS) for name in splits.SPLIT_NAMES},
            }),
            **number_metadata("test_share", float(sizes.get("test", 0) / max(len(frame), 1)), SHARE),
            **column_schema_metadata(frame),
        },
    )


@dg.asset(
    group_name=GROUP,
    kinds={"sklearn"},
    owners=OWNERS,
    code_version=asset_code_version("fitted_transformer"),
    tags={"stage": "training"},
)
def fitted_transformer(
    context: dg.AssetExecutionContext, housing_state: HousingStateResource, housing_splits: pd.DataFrame
) -> dg.Output[dict]:
    """The scikit-learn preprocessing, fit on the **train split only** and saved with skops.

    Median imputation of `total_bedrooms`, engineered per-household ratios and logs, biweight-kernel similarity
    to 100 k-means centres of (latitude, longitude), standard scaling and one-hot `ocean_proximity`
    (unknown categories ignored). Every feature can be computed from one request, so the server
    applies exactly this. The value is a JSON pointer to the `.skops` file (never a pickle).
    """
    train = _frames(housing_splits).train
    files = housing_state.files()
    best = recorded_best(files)  # the last hyper-parameter search's features, if any
    feature_options = (best or {}).get("features") or {}
    if feature_options:
        context.log.info(f"features of the recorded search result: {feature_options}")
    transformer = features.fit_transformer(train, **feature_options)
    key = f"artifacts/transformers/{context.run.run_id}.skops"
    path = files.local_path(key)
    features.save_transformer(transformer, path)
    location = files.publish(key)
    statistics = features.fitted_statistics(transformer)
    names = features.feature_names(transformer)
    medians = pd.DataFrame(
        {
            "column": list(statistics["imputer_medians"]),
            "train_median": list(statistics["imputer_medians"].values()),
        }
    )
    scaling = pd.DataFrame(
        {
            "feature": list(statistics["scaler_means"]),
            "train_mean": list(statistics["scaler_means"].values()),
            "train_std": list(statistics["scaler_scales"].values()),
        }
    )
    return dg.Output(
        {"path": location, "sha256": sha256_of(path), "feature_names": names, "fit_rows": len(train)},
        metadata={
            "path": dg.MetadataValue.path(location),
            **number_metadata("output_features", len(names), COUNT),
            "feature_names": ", ".join(names),
            **number_metadata("fit_rows", len(train), COUNT),
            "imputation_medians": markdown_table(medians, rows=50),
            "scaling": markdown_table(scaling, rows=50),
        },
    )


@dg.asset(
    group_name=GROUP,
    kinds={"tensorflow", "keras", "mlflow"},
    owners=OWNERS,
    code_version=asset_code_version("trained_model", TrainingRunConfig),
    tags={"stage": "training"},
)
def trained_model(
    context: dg.AssetExecutionContext,
    config: TrainingRunConfig,
    housing_state: HousingStateResource,
    mlflow_tracking: MLflowResource,
    housing_splits: pd.DataFrame,
    fitted_transformer: dict,
) -> dg.Output[dict]:
    """A TensorFlow Keras Sequential regression network, trained deterministically.

    Trained on the train split with early stopping on the validation split; seeded with op
    determinism, so the same data and config give the same weights. Every epoch is logged here and
    to an MLflow run (one run per training, named after the Dagster run), with the loss curves as a
    plot. Saved in Keras's native `.keras` format. Hyper-parameters are run config.
    """
    from housing_platform.core import model as keras_model

    # The recorded search result's hyper-parameters are the defaults; fields set in this run's config win.
    files = housing_state.files()
    training_config = run_training_config(context, config.to_training_config(), files)
    parts = _frames(housing_splits)
    transformer = features.load_transformer(files.fetch(fitted_transformer["path"], fitted_transformer["sha256"]))
    # The train rows' neighbourhood prices leave each row's own label out (core/neighbourhood.py).
    x_train = features.transform(transformer, parts.train, out_of_fold=True)
    x_val = features.transform(transformer, parts.validation)
    y_train, y_val = parts.train[TARGET_COLUMN].to_numpy(), parts.validation[TARGET_COLUMN].to_numpy()

    registry = mlflow_tracking.registry()
    run_id = registry.start_run(
        run_name=f"dagster-{context.run.run_id[:8]}",
        tags={"dagster.run_id": context.run.run_id, "dagster.asset": "trained_model"},
    )
    registry.log_params(run_id, {**training_config.model_dump(), "train_rows": len(x_train), "features": x_train.shape[1]})
    started = time.perf_counter()
    result = keras_model.train_model(x_train, y_train, x_val, y_val, training_config, log=context.log.info)
    seconds = time.perf_counter() - started
    registry.log_metric_history(run_id, result.history)
    # Prediction intervals, calibrated on the validation split (split conformal, core/conformal.py).
    calibration = conformal.calibrate(
        y_val, keras_model.predict(result.model, x_val, training_config), config.to_interval_config()
    )
    registry.log_params(run_id, {f"interval_{k}": v for k, v in calibration.model_dump().items()})
    context.log.info(f"{calibration.level:.0%} prediction intervals: ± {calibration.quantile:,.1f} × "
                     f"max(prediction, ${calibration.difficulty_floor_dollars:,.0f})^{calibration.difficulty_exponent:g}"
                     f" (calibrated on {calibration.calibration_rows:,} validation rows)")

    key = f"artifacts/models/{context.run.run_id}.keras"
    path = files.local_path(key)
    keras_model.save_model(result.model, path)
    location = files.publish(key)
    curves = f"reports/training/{context.run.run_id}"
    curve = evaluation.write_loss_curves(result.history, files.local_folder(curves))
    files.publish_folder(curves, {"loss": curve})
    registry.log_artifact(run_id, curve, "plots")
    # Later steps (evaluation, registration) log into this run by id; a finished run accepts that.
    registry.end_run(run_id)
    final = {name: float(values[result.best_epoch - 1]) for name, values in result.history.items()}
    return dg.Output(
        {
            "path": location,
            "sha256": sha256_of(path),
            "config": training_config.model_dump(),
            "mlflow_run_id": run_id,
            "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch,
            "training_seconds": seconds,
            "intervals": calibration.model_dump(),
            "transformer_path": fitted_transformer["path"],
            "transformer_sha256": fitted_transformer["sha256"],
        },
        metadata={
            "path": dg.MetadataValue.path(location),
            **numbers_metadata({"epochs_run": (result.epochs_run, COUNT), "best_epoch": (result.best_epoch, COUNT)}),
            **number_metadata("training_seconds", seconds, SECONDS),
            **numbers_metadata({f"best_{name}": (value, SCORE) for name, value in final.items()}),
            "mlflow_run": dg.MetadataValue.url(registry.run_url(run_id)),
            "loss_curves": png_markdown({"Loss per epoch": curve}),
        },
    )


@dg.asset(
    group_name=GROUP,
    kinds={"sklearn", "mlflow"},
    owners=OWNERS,
    code_version=asset_code_version("evaluation_report", EvaluationConfig),
    tags={"stage": "evaluation"},
)
def evaluation_report(
    context: dg.AssetExecutionContext,
    config: EvaluationConfig,
    housing_state: HousingStateResource,
    mlflow_tracking: MLflowResource,
    housing_splits: pd.DataFrame,
    fitted_transformer: dict,
    trained_model: dict,
    golden_holdout: pd.DataFrame,
) -> dg.Output[dict]:
    """How good the candidate is, on the test split, next to what it must beat.

    RMSE, MAE, R² and MAPE overall, per `ocean_proximity` and per `median_income` quintile; the same
    for four baselines (median price per `ocean_proximity`, LinearRegression and
    HistGradientBoostingRegressor fit on the train split; the textbook random forest of *Hands-On ML*
    ch. 2 fit on train + validation) and for the **current champion** scored on the
    very same test rows. Plots (predicted vs. actual, residuals, per-slice error) are embedded below
    and saved under `<state>/reports/evaluation/<run id>/` (the bucket in production). Candidate and
    champion are also scored on
    the pinned `golden_holdout`, which no new data can move, and the training labels are compared with
    the champion's (`label_shift`: a shift sends the version to a person instead of `champion`). Five
    blocking checks on this asset form the promotion gate; if any fails, nothing is registered and no
    alias moves.
    """
    from housing_platform.core import model as keras_model

    parts = _frames(housing_splits)
    files = housing_state.files()
    transformer = features.load_transformer(files.fetch(fitted_transformer["path"], fitted_transformer["sha256"]))
    network = keras_model.load_model(files.fetch(trained_model["path"], trained_model["sha256"]))
    training_config = keras_model.TrainingConfig(**trained_model["config"])
    x_test = features.transform(transformer, parts.test)
    y_test = parts.test[TARGET_COLUMN].to_numpy()
    predictions = keras_model.predict(network, x_test, training_config)

    metrics = regression_metrics(y_test, predictions)
    slices = evaluation.slice_metrics(parts.test, y_test, predictions)
    intervals = None
    if trained_model.get("intervals"):  # models trained before intervals existed carry none
        lower, upper = conformal.intervals(predictions, trained_model["intervals"])
        interval_table = evaluation.interval_slices(parts.test, y_test, lower, upper)
        intervals = {"calibration": trained_model["intervals"], "overall": interval_table.to_dict("records")[0],
                     "slices": interval_table.to_dict("records")}
    # One BLAS/OpenMP thread: beside TensorFlow's thread pools, spinning OpenMP workers made the
    # baselines 10-20x slower on 2 cores (HistGradientBoosting: 65 s instead of 4 s).
    with threadpool_limits(limits=1):
        baseline_values = evaluation.baseline_predictions(parts.train, parts.test, transformer, parts.validation)
    baselines = {name: regression_metrics(y_test, values) for name, values in baseline_values.items()}

    champion = champion_golden = None
    registry = mlflow_tracking.registry()
    current = registry.champion()
    if current is not None:
        context.log.info(f"scoring champion v{current.version} on the same {len(parts.test):,} test rows "
                         f"and the {len(golden_holdout):,} golden rows")
        champion_model = registry.load_pyfunc(current.model_uri)
        champion_predictions = champion_model.predict(parts.test[list(FEATURE_COLUMNS)])
        champion_golden = champion_model.predict(golden_holdout[list(FEATURE_COLUMNS)])
        champion = {
            "version": current.version,
            "model_uri": current.model_uri,
            "model_sha256": current.tags.get("model_sha256"),
            "metrics": regression_metrics(y_test, np.asarray(champion_predictions)),
        }

    plot_key = f"reports/evaluation/{context.run.run_id}"
    plots = evaluation.write_plots(y_test, predictions, files.local_folder(plot_key), slices=slices, title="candidate")
    plot_locations = files.publish_folder(plot_key, plots)
    thresholds = config.to_thresholds()
    golden = golden_comparison(
        golden_holdout,
        keras_model.predict(network, features.transform(transformer, golden_holdout), training_config),
        champion_golden,
    )
    label_stats = label_statistics(housing_splits)  # the whole span the candidate learns from and is tested on
    label_shift = compare_label_statistics(
        parse_statistics(current.tags.get(TRAINING_LABEL_STATS_TAG)) if current is not None else None,
        label_stats, thresholds.max_label_median_shift, thresholds.min_label_shift_rows,
    )
    context.log.info(label_shift.reason)
    report = {
        "metrics": metrics,
        "baselines": baselines,
        "champion": champion,
        "slices": slices.to_dict("records"),
        "intervals": intervals,
        "test_rows": len(parts.test),
        "golden_holdout": golden,
        "label_shift": label_shift.to_dict(),
        "training_label_stats": label_stats,
        "candidate_model_sha256": trained_model["sha256"],
        "mlflow_run_id": trained_model["mlflow_run_id"],
        "gate_thresholds": thresholds.model_dump(),
        "plots": plot_locations,
    }
    verdicts = evaluate_model_gate(report, thresholds)
    report["gate"] = {name: {"passed": v.passed, "skipped": v.skipped, "needs_review": v.needs_review,
                             "description": v.description} for name, v in verdicts.items()}

    registry.log_metrics(report["mlflow_run_id"], {f"test_{k}": v for k, v in metrics.items()})
    if intervals:
        registry.log_metrics(report["mlflow_run_id"], {"test_interval_coverage": intervals["overall"]["coverage"],
                                                       "test_interval_mean_width": intervals["overall"]["mean_width"]})
    registry.log_metrics(
        report["mlflow_run_id"],
        {f"baseline_{name}_rmse": values["rmse"] for name, values in baselines.items()},
    )
    for path in plots.values():
        registry.log_artifact(report["mlflow_run_id"], path, "plots")

    comparison = comparison_table(metrics, baselines, champion)
    context.log.info("\n" + comparison.to_string(index=False))
    return dg.Output(
        report,
        metadata=evaluation_metadata(
            report, comparison=comparison, slices=slices, verdicts=verdicts, plots=plots,
            label_shift_reason=label_shift.reason, mlflow_run_url=registry.run_url(report["mlflow_run_id"]),
        ),
    )
