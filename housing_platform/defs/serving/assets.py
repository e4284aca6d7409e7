"""Serving: batch predictions for a file of districts, through the same fast path as the model server."""

import time

import dagster as dg
import numpy as np
from pydantic import Field

from housing_platform.adapters.mlflow_registry import CHAMPION_ALIAS
from housing_platform.adapters.model_uri import ModelReference, resolve_version
from housing_platform.core.schema import FEATURE_COLUMNS
from housing_platform.defs.code_versions import asset_code_version
from housing_platform.defs.metadata import (
    COUNT,
    DOLLARS,
    SECONDS,
    markdown_table,
    numbers_metadata,
)
from housing_platform.defs.registry import assets as registry_assets
from housing_platform.defs.resources import HousingStateResource, MLflowResource
from housing_platform.scoring.batch import (
    BATCH_PRECISION,
    MODEL_VERSION_COLUMN,
    OUT_OF_RANGE_COLUMN,
    PREDICTION_COLUMN,
    REJECTED_COLUMN,
    read_districts,
    score_frame,
)
from housing_platform.scoring.verification import load_fast_scorer

GROUP = "serving"
OWNERS = ["team:ml-platform"]

# The live endpoint is a process (`housing-platform serve`), not something Dagster materializes; it
# is declared as an external asset so the lineage shows where monitoring's data comes from.
live_endpoint_captures = dg.AssetSpec(
    "live_endpoint_captures",
    group_name=GROUP,
    kinds={"fastapi", "sqlalchemy"},
    owners=OWNERS,
    deps=["registered_model_version"],
    tags={"stage": "serving"},
    description=(
        "Rows scored by the live endpoint (`housing-platform serve` / `make serve`) and the feedback "
        "sent back to it, in the capture store (SQLite in the state folder, or `HOUSING_CAPTURE_URL`). "
        "The server follows the `champion` alias of `registered_model_version`, answers "
        "`POST /v1/predict` with the numpy fast path and writes every scored row here in the "
        "background; `POST /v1/feedback` adds the true value. Not materialized by Dagster: the "
        "monitoring assets read it. Its check `endpoint_serves_champion` tells whether the version in "
        "recent captures is the `champion`."
    ),
)
PREDICTIONS_FOLDER = "predictions"


class BatchScoringConfig(dg.Config):
    """What to score and with which model."""

    input_path: str | None = Field(
        None,
        description="CSV or Parquet file of districts to score (feature columns; others are kept). "
        "Default: the platform's district CSV (`housing_state.data_path`, i.e. HOUSING_DATA_PATH or "
        "data/california_housing.csv).",
    )
    model_alias: str = Field(CHAMPION_ALIAS, description="Alias of the registered version to score with.")


@dg.asset(
    group_name=GROUP,
    kinds={"pandas", "mlflow"},
    owners=OWNERS,
    code_version=asset_code_version("batch_predictions", BatchScoringConfig),
    tags={"stage": "serving"},
    deps=[registry_assets.registered_model_version],
)
def batch_predictions(
    context: dg.AssetExecutionContext,
    config: BatchScoringConfig,
    housing_state: HousingStateResource,
    mlflow_tracking: MLflowResource,
) -> dg.MaterializeResult:
    """Predicted median house value for every district of a file, scored by the `champion` in bulk.

    The offline twin of the model server. It resolves the `champion` alias (configurable) to a
    registered version, loads that version exactly as `mlflow.pyfunc.load_model` does, derives the
    same numpy fast path the server uses (`housing_platform.scoring.scorer.FastScorer`, verified against the
    pyfunc on probe rows at load time and on the whole test split in CI), and scores the configured
    CSV or Parquet file — over a million rows per second, so the file's reading dominates.

    Output: `<state>/predictions/batch_predictions_<run id>.parquet`, one row per input row, with
    every input column plus `prediction` (USD), `model_version` (the version that scored the row),
    `out_of_range` (features outside the version's training range — scored but worth a look) and
    `rejected_rules` (the schema rules a row breaks; such rows are kept, unscored, with a NaN
    prediction, exactly as the API would answer them with a 422). Each run writes a new file, so
    earlier predictions stay reproducible. The same scoring is available without Dagster as
    `housing-platform score INPUT OUTPUT`.
    """
    input_path = config.input_path or housing_state.data_path
    registry = mlflow_tracking.registry()
    reference = ModelReference(mlflow_tracking.model_name, alias=config.model_alias)
    version = resolve_version(registry, reference)
    model_uri = f"models:/{reference.name}/{version}"
    load_started = time.perf_counter()
    scorer = load_fast_scorer(model_uri, precision=BATCH_PRECISION)
    load_seconds = time.perf_counter() - load_started

    frame = read_districts(input_path)
    started = time.perf_counter()
    scored = score_frame(scorer, frame, version)
    score_seconds = time.perf_counter() - started

    files = housing_state.files()  # the state folder, or the bucket in the production profile
    key = f"{PREDICTIONS_FOLDER}/batch_predictions_{context.run.run_id}.parquet"
    scored.to_parquet(files.local_path(key), index=False)
    path = files.publish(key)

    predictions = scored[PREDICTION_COLUMN].to_numpy()
    rejected = int((scored[REJECTED_COLUMN] != "").sum())
    flagged = int((scored[OUT_OF_RANGE_COLUMN] != "").sum())
    scored_rows = len(scored) - rejected
    quantiles = np.nanpercentile(predictions, [5, 50, 95]) if scored_rows else [np.nan] * 3
    context.log.info(
        f"scored {scored_rows:,} of {len(scored):,} rows from {input_path} with {model_uri} in "
        f"{score_seconds:.2f} s; {rejected:,} rejected by schema rules, {flagged:,} outside the training range"
    )
    preview_columns = [*FEATURE_COLUMNS, PREDICTION_COLUMN, MODEL_VERSION_COLUMN]
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(path),
            "input_path": dg.MetadataValue.path(str(input_path)),
            "model_version": version,
            "model_uri": model_uri,
            "mlflow_version_page": dg.MetadataValue.url(registry.version_url(version)),
            "dagster/row_count": dg.MetadataValue.int(len(scored)),
            **numbers_metadata({
                "scored_rows": (scored_rows, COUNT),
                "rejected_rows": (rejected, COUNT),
                "out_of_training_range_rows": (flagged, COUNT),
                "prediction_p5": (float(quantiles[0]), DOLLARS),
                "prediction_median": (float(quantiles[1]), DOLLARS),
                "prediction_p95": (float(quantiles[2]), DOLLARS),
                "model_load_seconds": (load_seconds, SECONDS),
                "scoring_seconds": (score_seconds, SECONDS),
                "rows_per_second": (len(scored) / score_seconds if score_seconds else 0.0, COUNT),
            }),
            "preview": markdown_table(scored[preview_columns]),
        }
    )
