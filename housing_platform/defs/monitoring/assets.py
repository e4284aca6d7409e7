"""Monitoring: what the live endpoint saw each day, whether it drifted, and how good it was.

Daily partitions. `inference_log` reads one UTC day of captures (with feedback) from the capture
store; `drift_report` compares it with the training reference stored with the serving model version
(Evidently); `live_model_performance` scores the served predictions against fed-back truth. Their
checks (`checks.py`) are what the `retrain_on_drift` sensor watches; run config is in `config.py`,
the partitions in `partitions.py`.
"""

import json

import dagster as dg
import pandas as pd

from housing_platform.adapters.mlflow_registry import INTERVAL_CALIBRATION_TAG
from housing_platform.core import drift
from housing_platform.core import live_quality as monitoring
from housing_platform.defs.code_versions import asset_code_version
from housing_platform.defs.metadata import (
    COUNT,
    DOLLARS,
    MILLISECONDS,
    SHARE,
    column_schema_metadata,
    markdown_table,
    numbers_metadata,
)
from housing_platform.defs.monitoring.checks import DRIFT_CHECK, QUALITY_CHECK, drift_check_spec, quality_check_spec
from housing_platform.defs.monitoring.config import DriftReportConfig, LivePerformanceConfig
from housing_platform.defs.monitoring.partitions import daily_partitions, day_window
from housing_platform.defs.resources import CaptureStoreResource, HousingStateResource, MLflowResource
from housing_platform.scoring.fallback import FALLBACK_VERSION

GROUP = "monitoring"
OWNERS = ["team:ml-platform"]
MONITORING_EXPERIMENT = "monitoring"
DRIFT_REPORTS = "reports/drift"  # file-store key folder of the daily reports (read back by drift_history)


@dg.asset(
    group_name=GROUP,
    kinds={"pandas", "sqlalchemy"},
    owners=OWNERS,
    code_version=asset_code_version("inference_log"),
    partitions_def=daily_partitions,
    tags={"stage": "monitoring"},
    deps=["live_endpoint_captures"],
)
def inference_log(context: dg.AssetExecutionContext, capture_store: CaptureStoreResource) -> dg.Output[pd.DataFrame]:
    """Every row the live endpoint scored on this UTC day, with the true value where feedback came back.

    Read from the capture store the server writes to (SQLite in the state folder by default, any
    SQLAlchemy URL via `HOUSING_CAPTURE_URL`): request id, timestamp, model version, the nine
    features, prediction, latency, out-of-range flags, and `median_house_value` when labelled.
    Metadata gives latency percentiles, the share of out-of-range rows, the model versions seen and
    the labelled count, each plotted over partitions in the UI.
    """
    start, end = day_window(context.partition_key)
    store = capture_store.store()
    try:
        frame = store.read_captures(start, end, with_feedback=True)
    finally:
        store.dispose()
    latency = monitoring.latency_percentiles(frame)
    versions = sorted(frame["model_version"].astype(str).unique()) if len(frame) else []
    labelled = len(monitoring.labelled(frame))
    context.log.info(f"{context.partition_key}: {len(frame):,} captured rows, {labelled:,} labelled, versions {versions}")
    # Timestamps as UTC-naive so the frame round-trips through Parquet on every engine.
    stored = frame.assign(
        **{c: frame[c].dt.tz_convert("UTC").dt.tz_localize(None) for c in ("captured_at", "feedback_received_at") if c in frame}
    )
    return dg.Output(
        stored,
        metadata={
            **numbers_metadata({
                "row_count": (len(frame), COUNT),
                "labelled_rows": (labelled, COUNT),
                "latency_p50_ms": (latency["p50"], MILLISECONDS),
                "latency_p95_ms": (latency["p95"], MILLISECONDS),
                "latency_p99_ms": (latency["p99"], MILLISECONDS),
                "out_of_range_share": (monitoring.out_of_range_share(frame), SHARE),
            }),
            "model_versions": ", ".join(versions) or "none",
            "preview": markdown_table(stored) if len(stored) else "no traffic",
            **column_schema_metadata(stored),
        },
    )


def model_answers(frame: pd.DataFrame) -> pd.DataFrame:
    """The captured rows a model version answered: the server's fallback answers (model version
    ``fallback``, the heuristic baseline while no version could be loaded) are not a model's to judge."""
    return frame[frame["model_version"].astype(str) != FALLBACK_VERSION] if len(frame) else frame


def _serving_version(frame: pd.DataFrame) -> str | None:
    if frame.empty:
        return None
    return str(frame["model_version"].astype(str).value_counts().idxmax())


@dg.asset(
    group_name=GROUP,
    kinds={"evidently", "mlflow"},
    owners=OWNERS,
    code_version=asset_code_version("drift_report", DriftReportConfig),
    partitions_def=daily_partitions,
    tags={"stage": "monitoring"},
    check_specs=[drift_check_spec()],
)
def drift_report(
    context: dg.AssetExecutionContext,
    config: DriftReportConfig,
    housing_state: HousingStateResource,
    mlflow_tracking: MLflowResource,
    inference_log: pd.DataFrame,
):
    """Evidently data-drift report: this day's traffic against the model's training reference.

    The reference is the sample of training rows (features + the model's predictions) stored with
    the model version that served most of the day's rows, so a drift report always compares traffic
    with what *that* model learned from. Columns are compared with Evidently's distances (normed
    Wasserstein for numbers, Jensen–Shannon for `ocean_proximity`, threshold 0.1 raised to the noise
    floor of small days), plus the prediction. The check `no_feature_drift` fails when a rule of
    `core.drift_rules` fires — dataset share, key feature, severe single feature, prediction drift —
    and names each with its numbers (metadata `rules_fired`). The HTML report is written to
    `<state>/reports/drift/<date>.html` (open it in a browser; `s3://<bucket>/<prefix>/reports/drift/` in
    the production profile), beside its JSON, and logged to the MLflow `monitoring` experiment. The
    value is a tidy table (column, method, score, threshold, drifted):
    `defs.load_asset_value("drift_report", partition_key="2026-11-22")`.
    """
    date = context.partition_key
    inference_log = model_answers(inference_log)
    version = _serving_version(inference_log)
    drift_config = config.to_drift_config()
    registry = mlflow_tracking.registry()
    if version is None:
        reference = None
        champion = registry.champion()
        version = champion.version if champion else None
    if version is not None:
        reference = registry.load_reference(version)
    if reference is None:
        raise dg.Failure(description="No registered model version and no traffic: there is nothing to compare yet.")

    result = drift.compute_drift(reference, inference_log, drift_config)
    files = housing_state.files()  # the state folder, or the bucket in the production profile
    html_key, json_key = f"{DRIFT_REPORTS}/{date}.html", f"{DRIFT_REPORTS}/{date}.json"
    html_path, json_path = result.write_reports(files.local_path(html_key), files.local_path(json_key))
    html_location, json_location = files.publish(html_key), files.publish(json_key)

    run_id = registry.start_run(
        run_name=f"drift-{date}",
        experiment=MONITORING_EXPERIMENT,
        tags={"dagster.run_id": context.run.run_id, "partition": date, "model_version": str(version)},
    )
    registry.log_artifact(run_id, html_path, "drift")
    registry.log_artifact(run_id, json_path, "drift")
    registry.log_metrics(run_id, {"drifted_share": result.drifted_share, "current_rows": result.current_rows})
    registry.end_run(run_id)

    context.log.info(f"{date}: {result.verdict} — {result.reason}")
    table = result.table.astype({"score": float, "threshold": float, "drifted": bool}) if len(result.table) else result.table
    yield dg.Output(
        pd.DataFrame(table, columns=list(drift.TABLE_COLUMNS)),
        metadata={
            "platform_verdict": dg.MetadataValue.md(result.platform_verdict().to_markdown()),
            "verdict": result.verdict,
            "reason": result.reason,
            "rules_fired": ", ".join(result.rules_fired) or "none",
            "dataset_drift": result.dataset_drift,
            **numbers_metadata({"drifted_share": (result.drifted_share, SHARE), "current_rows": (result.current_rows, COUNT)}),
            "drifted_columns": ", ".join(result.drifted_columns) or "none",
            "reference_model_version": str(version),
            "drift_table": markdown_table(result.table, rows=20, floatfmt=".3f") if len(result.table) else "not computed",
            "html_report": dg.MetadataValue.url(files.link(html_key)),
            "html_report_path": dg.MetadataValue.path(html_location),
            "json_report_path": dg.MetadataValue.path(json_location),
            "mlflow_run": dg.MetadataValue.url(registry.run_url(run_id)),
        },
    )
    scores = {row.column: float(row.score) for row in result.table.itertuples()} if len(result.table) else {}
    yield dg.AssetCheckResult(
        check_name=DRIFT_CHECK,
        passed=result.check_passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"{result.verdict}: {result.reason}",
        metadata={
            "verdict": result.verdict,
            "rules_fired": ", ".join(result.rules_fired) or "none",
            "drifted_columns": ", ".join(result.drifted_columns) or "none",
            "key_feature_drift": ", ".join(result.key_feature_drift) or "none",
            "severe_feature_drift": ", ".join(result.severe_feature_drift) or "none",
            "prediction_drift": "not compared" if result.prediction_drift is None else str(result.prediction_drift),
            **numbers_metadata({"drifted_share": (result.drifted_share, SHARE), "current_rows": (result.current_rows, COUNT)}),
            "scores": dg.MetadataValue.json(scores),
            "severe_thresholds": dg.MetadataValue.json(result.severe_thresholds),
        },
    )


@dg.asset(
    group_name=GROUP,
    kinds={"pandas", "mlflow"},
    owners=OWNERS,
    code_version=asset_code_version("live_model_performance", LivePerformanceConfig),
    partitions_def=daily_partitions,
    tags={"stage": "monitoring"},
    check_specs=[quality_check_spec()],
)
def live_model_performance(
    context: dg.AssetExecutionContext,
    config: LivePerformanceConfig,
    mlflow_tracking: MLflowResource,
    inference_log: pd.DataFrame,
):
    """How accurate the served predictions were, once the true values came back.

    Feedback (`POST /v1/feedback`) is joined to captures by request id; for each model version that
    served this day: scored and labelled row counts, live RMSE and MAE, and the version's RMSE at
    evaluation time (its `test_rmse` registry tag) as the yardstick. The check fails when the live
    RMSE is worse by more than the tolerance, which catches what feature drift cannot — e.g. prices
    inflating while the features stay put.
    """
    registry = mlflow_tracking.registry()
    inference_log = model_answers(inference_log)
    versions = sorted(inference_log["model_version"].astype(str).unique()) if len(inference_log) else []
    evaluation_rmse, calibrations = {}, {}
    for version in versions:
        try:
            tags = registry.get_version(version).tags
            evaluation_rmse[version] = float(tags.get("test_rmse", "nan"))
            if tags.get(INTERVAL_CALIBRATION_TAG):  # the version's prediction intervals (core/conformal.py)
                calibrations[version] = json.loads(tags[INTERVAL_CALIBRATION_TAG])
        except Exception as error:  # a version deleted from the registry is reported, not fatal
            context.log.warning(f"model version {version} not found in the registry: {error}")
    performance = monitoring.live_performance(inference_log, evaluation_rmse, calibrations=calibrations)
    verdict = monitoring.quality_verdict(performance, config.tolerance, config.min_labelled_rows,
                                         config.max_interval_coverage_gap)
    context.log.info(verdict.description)
    labelled = int(performance["labelled_rows"].sum()) if len(performance) else 0
    overall = monitoring.live_performance(inference_log.assign(model_version="all"), {})
    yield dg.Output(
        performance,
        metadata={
            **numbers_metadata({
                "labelled_rows": (labelled, COUNT),
                "live_rmse": (float(overall["rmse"].iloc[0]) if len(overall) else None, DOLLARS),
                "live_mae": (float(overall["mae"].iloc[0]) if len(overall) else None, DOLLARS),
            }),
            "per_version": markdown_table(performance, rows=20, floatfmt=",.2f") if len(performance) else "no traffic",
            **column_schema_metadata(performance),
        },
    )
    yield dg.AssetCheckResult(
        check_name=QUALITY_CHECK,
        passed=verdict.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=verdict.description,
        metadata={
            "degraded_versions": ", ".join(verdict.degraded_versions) or "none",
            "judged_versions": ", ".join(verdict.judged_versions) or "none",
            **numbers_metadata({"labelled_rows": (labelled, COUNT)}),
            "rmse_by_version": dg.MetadataValue.json(
                {r.model_version: r.rmse for r in performance.itertuples() if r.rmse == r.rmse}
            ),
        },
    )
