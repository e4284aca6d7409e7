"""Registry: the version that passed the gate, registered in MLflow and made the champion."""

import json
import tempfile
from collections.abc import Iterator

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from housing_platform.adapters.alias_moves import (
    CHALLENGER_ALIAS,
    HOLD,
    record_direct_promotion,
    record_move,
    start_rollout,
)
from housing_platform.adapters.fallback_store import store_fallback_baseline
from housing_platform.adapters.mlflow_registry import (
    CHAMPION_ALIAS,
    FAST_PATH_REASON_TAG,
    FAST_PATH_VERIFIED_TAG,
    INTERVAL_CALIBRATION_TAG,
    PENDING_APPROVAL_ALIAS,
    PREVIOUS_ALIAS,
    TRAINING_LABEL_STATS_TAG,
    git_commit,
    model_artifacts,
)
from housing_platform.core import features
from housing_platform.core.label_shift import label_statistics
from housing_platform.core.rollout import DIRECT, RolloutConfig
from housing_platform.core.schema import FEATURE_COLUMNS, TARGET_COLUMN
from housing_platform.core.splits import SPLIT_COLUMN
from housing_platform.defs.code_versions import asset_code_version
from housing_platform.defs.config_fields import field_from
from housing_platform.defs.metadata import COUNT, DOLLARS, number_metadata
from housing_platform.defs.registry.checks import (
    fast_path_check_result,
    fast_path_check_spec,
    label_shift_check_result,
    label_shift_check_spec,
    verify_registered_version,
)
from housing_platform.defs.resources import HousingStateResource, MLflowResource
from housing_platform.scoring.fallback import fit_fallback_baseline

GROUP = "registry"
OWNERS = ["team:ml-platform"]
REFERENCE_PREDICTION_COLUMN = "prediction"


class RegistrationConfig(dg.Config):
    reference_rows: int = Field(5_000, description="Train rows stored with the version as the drift reference.")
    promote: bool = Field(
        True,
        description="Move the `champion` alias to the new version (it passed the gate) once its fast path is verified.",
    )
    rollout: str = field_from(
        RolloutConfig, "mode", "direct: the verified version becomes `champion` at once; shadow | canary: it "
        "becomes `challenger`, served beside the champion until `challenger_comparison` promotes or rejects it."
    )
    rollout_share: float = field_from(RolloutConfig, "share", "canary: the fraction of rows the challenger answers.")


def _data_version(context: dg.AssetExecutionContext, asset: str) -> str:
    record = context.instance.get_latest_materialization_event(dg.AssetKey(asset))
    if record is None or record.asset_materialization is None:
        return "unknown"
    return record.asset_materialization.tags.get("dagster/data_version", "unknown")


@dg.asset(
    group_name=GROUP,
    kinds={"mlflow"},
    owners=OWNERS,
    code_version=asset_code_version("registered_model_version", RegistrationConfig),
    tags={"stage": "registry"},
    check_specs=[fast_path_check_spec, label_shift_check_spec],
)
def registered_model_version(
    context: dg.AssetExecutionContext,
    config: RegistrationConfig,
    mlflow_tracking: MLflowResource,
    housing_state: HousingStateResource,
    housing_splits: pd.DataFrame,
    fitted_transformer: dict,
    trained_model: dict,
    evaluation_report: dict,
) -> Iterator[dg.Output[dict] | dg.AssetCheckResult]:
    """The candidate, registered as a new version of `housing_price_model` and made the `champion`.

    Runs only when every blocking gate check on `evaluation_report` passed. Logs ONE MLflow pyfunc
    model *from code* that bundles the skops transformer and the `.keras` network (loading it
    unpickles nothing, and every consumer applies identical preprocessing), with signature, input
    example and pinned pip requirements. The version is tagged with its lineage: Dagster run id,
    data version of `raw_housing_data`, git commit, metrics and file hashes. The version is then
    loaded back as the model server loads it and its numpy fast path compared with the pyfunc on the
    probe rows and the whole test split (blocking check `fast_path_matches_registered_model`); only
    if every row is within its float32 error bound does the `champion` alias move to it, the replaced
    champion becoming `previous` (roll back by moving `champion` back). A refused version stays
    registered, tagged `fast_path_verified=false` with the reason, and the run fails. If the training
    labels shifted since the champion's (`evaluation_report`'s `label_shift`), a verified version is not
    promoted: it gets the alias `pending_approval` and waits for `housing-platform approve|reject VERSION`
    (check `label_distribution_matches_champion` says why, with the numbers).
    A sample of training rows with the model's predictions is stored with the run as the drift
    reference. The heuristic baseline (median per `ocean_proximity`) is stored with the version and, on
    promotion, in the file store (the state folder, or the bucket in the production profile): the model
    server's fallback when it can load no version. Load the champion anywhere with
    `mlflow.pyfunc.load_model("models:/housing_price_model@champion")`.
    """
    from housing_platform.core import model as keras_model

    # A mistyped rollout fails the run here, naming the field, before anything is registered.
    RolloutConfig(mode=config.rollout, share=config.rollout_share)
    registry = mlflow_tracking.registry()
    train = housing_splits[housing_splits[SPLIT_COLUMN] == "train"]
    reference = train.sample(n=min(config.reference_rows, len(train)), random_state=0).reset_index(drop=True)
    files = housing_state.files()  # the model files of this run: local, or downloaded from the bucket
    transformer_file = files.fetch(fitted_transformer["path"], fitted_transformer["sha256"])  # as written, or fail
    network_file = files.fetch(trained_model["path"], trained_model["sha256"])
    transformer = features.load_transformer(transformer_file)
    network = keras_model.load_model(network_file)
    training_config = keras_model.TrainingConfig(**trained_model["config"])
    reference[REFERENCE_PREDICTION_COLUMN] = keras_model.predict(
        network, features.transform(transformer, reference), training_config
    )

    input_example = reference[list(FEATURE_COLUMNS)].head(5)
    metrics = evaluation_report["metrics"]
    tags = {
        "dagster_run_id": context.run.run_id,
        "raw_housing_data_version": _data_version(context, "raw_housing_data"),
        "git_commit": git_commit(),
        "model_sha256": trained_model["sha256"],
        "transformer_sha256": fitted_transformer["sha256"],
        **{f"test_{name}": f"{value:.6g}" for name, value in metrics.items()},
        # What the next candidate's training labels are compared with (core/label_shift.py).
        TRAINING_LABEL_STATS_TAG: json.dumps(label_statistics(housing_splits), sort_keys=True),
    }
    if trained_model.get("intervals"):  # read back by live_model_performance (interval coverage on labelled rows)
        tags[INTERVAL_CALIBRATION_TAG] = json.dumps(trained_model["intervals"], sort_keys=True)
    golden = evaluation_report.get("golden_holdout")
    if golden:
        tags.update(golden_rmse=f"{golden['metrics']['rmse']:.6g}", golden_holdout_sha256=golden["content_sha256"])
    with tempfile.TemporaryDirectory() as folder:
        version = registry.log_and_register(
            run_id=trained_model["mlflow_run_id"],
            artifacts=model_artifacts(
                folder, transformer_file, network_file, trained_model["config"], train,
                intervals=trained_model.get("intervals"),
            ),
            input_example=input_example,
            predictions_example=np.asarray(reference[REFERENCE_PREDICTION_COLUMN].head(5), dtype=np.float64),
            tags=tags,
            reference=reference[[*FEATURE_COLUMNS, TARGET_COLUMN, REFERENCE_PREDICTION_COLUMN]],
        )
    test_rows = housing_splits[housing_splits[SPLIT_COLUMN] == "test"]
    verdict = verify_registered_version(version.model_uri, test_rows)
    registry.set_tags(
        version.version,
        {FAST_PATH_VERIFIED_TAG: str(verdict.passed).lower(), FAST_PATH_REASON_TAG: verdict.reason()},
    )
    # Labels that moved since the champion's training data: a person decides (`housing-platform approve|reject`).
    label_shift = evaluation_report.get("label_shift") or {}
    held = verdict.passed and config.promote and bool(label_shift.get("shifted"))
    if held:
        superseded = registry.hold_for_approval(version.version, label_shift["reason"])
        record_move(registry, HOLD, PENDING_APPROVAL_ALIAS, version.version,
                    superseded.version if superseded else None, f"dagster run {context.run.run_id}",
                    label_shift["reason"])
        context.log.warning(f"version {version.version} waits in '{PENDING_APPROVAL_ALIAS}': {label_shift['reason']}")
    passed = verdict.passed and config.promote and not held
    champion_before = registry.champion()
    # With rollout shadow | canary a verified version goes live beside the champion first; the very first
    # version has nothing to be compared with and becomes champion at once.
    challenger = passed and config.rollout != DIRECT and champion_before is not None
    promoted = passed and not challenger
    by = f"dagster run {context.run.run_id}"
    evidence = {"test_rmse": round(metrics["rmse"], 2), "gate": "passed", "fast_path_verified": verdict.passed}
    if challenger:
        start_rollout(registry, version.version, config.rollout, config.rollout_share, by,
                      "passed the gate and the fast-path check", evidence)
        context.log.info(f"version {version.version} is '{CHALLENGER_ALIAS}' ({config.rollout}, share "
                         f"{config.rollout_share:g}) beside champion {champion_before.version}")
    previous = registry.promote(version.version) if promoted else None
    if promoted:
        record_direct_promotion(registry, version.version, previous.version if previous else None, by,
                                "passed the gate and the fast-path check (rollout=direct)" if config.rollout == DIRECT
                                else f"passed the gate; first version (rollout={config.rollout}: no champion to "
                                "compare with)", evidence)
        # what the model server answers with if it can load no version (scoring/fallback.py)
        store_fallback_baseline(files, {**fit_fallback_baseline(train), "model_version": version.version})
    aliases = registry.aliases_of(version.version)
    log = context.log.info if verdict.passed else context.log.error
    log(
        f"registered {version.model_uri} (aliases: {', '.join(aliases) or 'none'}); {verdict.reason()}; "
        + (f"previous champion: {previous.version if previous else 'none'}" if promoted else "champion not moved")
    )
    yield dg.Output(
        {
            "name": version.name,
            "version": version.version,
            "model_uri": version.model_uri,
            "run_id": version.run_id,
            "aliases": aliases,
            "previous_champion": previous.version if previous else None,
            "fast_path_verified": verdict.passed,
            "promoted": promoted,
            "pending_approval": held,
            "challenger": challenger,
            "rollout": config.rollout,
            "tags": tags,
        },
        metadata={
            "version": dg.MetadataValue.int(int(version.version)),
            "model_uri": version.model_uri,
            "champion_uri": f"models:/{version.name}@{CHAMPION_ALIAS}",
            "aliases": ", ".join(aliases) or "none",
            "promoted": promoted,
            "pending_approval": held,
            "challenger": challenger,
            "rollout": config.rollout,
            "fast_path_verified": verdict.passed,
            f"{PREVIOUS_ALIAS}_version": previous.version if previous else "none",
            **number_metadata("test_rmse", metrics["rmse"], DOLLARS),
            "mlflow_version_page": dg.MetadataValue.url(registry.version_url(version.version)),
            "mlflow_run": dg.MetadataValue.url(registry.run_url(version.run_id)),
            "git_commit": tags["git_commit"],
            "raw_housing_data_version": tags["raw_housing_data_version"],
            **number_metadata("reference_rows", len(reference), COUNT),
        },
    )
    yield fast_path_check_result(verdict, version.version, promoted)
    yield label_shift_check_result(evaluation_report, version.version, held)
