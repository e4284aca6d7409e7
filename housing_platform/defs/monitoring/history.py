"""`drift_history`: the last N days of drift on one page, and what the platform did about each failed day.

Reads what the platform recorded, never recomputes: each day's drift summary from its JSON report in
`<state>/reports/drift/` or the bucket (the file store; the check's own verdict and scores), the live
RMSE and labelled volume from `live_model_performance`'s materializations, the retraining runs the
`retrain_on_drift` sensor launched for a failed day (by their trigger tags), the version each
registered and its gate checks from that run's events, and the version's aliases and approval tags
from the MLflow registry. The drawing and the wording are `core.drift_history`'s.
"""


import json
from datetime import datetime, timedelta, timezone

import dagster as dg

from housing_platform.adapters.mlflow_registry import (
    APPROVAL_STATUS_TAG,
    CHAMPION_ALIAS,
    PENDING_APPROVAL_ALIAS,
    ModelRegistry,
)
from housing_platform.core.drift import JSON_SUMMARY_KEY
from housing_platform.core.drift_history import FollowUp, history_day, history_html, history_markdown, write_history_png
from housing_platform.defs.code_versions import asset_code_version
from housing_platform.defs.metadata import COUNT, numbers_metadata, png_markdown
from housing_platform.defs.monitoring.assets import DRIFT_REPORTS
from housing_platform.defs.monitoring.checks import DRIFT_ASSET, QUALITY_ASSET
from housing_platform.defs.monitoring.config import DriftHistoryConfig
from housing_platform.defs.resources import HousingStateResource, MLflowResource
from housing_platform.defs.sensors import CHECK_TAG, PARTITION_TAG, TRIGGER_TAG

HISTORY_ASSET = "drift_history"
REGISTRY_ASSET = "registered_model_version"
PNG_KEY, PAGE_KEY = "reports/drift_history.png", "reports/drift_history.html"  # file-store keys
GROUP = "monitoring"
OWNERS = ["team:ml-platform"]


@dg.asset(
    name=HISTORY_ASSET,
    group_name=GROUP,
    kinds={"matplotlib", "mlflow"},
    owners=OWNERS,
    code_version=asset_code_version(HISTORY_ASSET, DriftHistoryConfig),
    tags={"stage": "monitoring"},
    deps=[DRIFT_ASSET, QUALITY_ASSET],
)
def drift_history(
    context: dg.AssetExecutionContext,
    config: DriftHistoryConfig,
    housing_state: HousingStateResource,
    mlflow_tracking: MLflowResource,
) -> dg.MaterializeResult:
    """Drift over the last N days (default 30): is a drift a one-day blip or a trend, and what followed it?

    A heatmap of each feature's drift score ÷ its threshold per day, with the days that failed
    `no_feature_drift` marked, then the prediction's drift, the live RMSE and the labelled volume per
    day — shown here as an image and written as a small standalone page,
    `<state>/reports/drift_history.html`. Each failed day lists the retraining run the sensor launched
    for it, the version it registered, the gate's decision, the approval or rollout state from the
    registry's aliases and tags, with links to the Dagster run and the MLflow version; the metadata
    names the version serving now.
    """
    end = datetime.now(timezone.utc).date()
    days = [(end - timedelta(days=offset)).isoformat() for offset in reversed(range(config.days))]
    files = housing_state.files()  # the state folder, or the bucket in the production profile
    registry = mlflow_tracking.registry()
    live = _live_quality(context.instance, days)
    history = [
        history_day(day, _summary(files.read_text(f"{DRIFT_REPORTS}/{day}.json")), *live.get(day, (None, None)),
                    follow_ups=_follow_ups(context.instance, registry, day, config.dagster_ui_url))
        for day in days
    ]
    champion = registry.champion()
    serving_now = f"version {champion.version} ({CHAMPION_ALIAS})" if champion else "no champion"
    png = write_history_png(history, files.local_path(PNG_KEY))
    files.publish(PNG_KEY)
    page = files.write_text(PAGE_KEY, history_html(history, png.read_bytes(), serving_now))
    failed = [day for day in history if day.failed]
    context.log.info(f"drift history {days[0]}..{days[-1]}: {len(failed)} failed days; serving now {serving_now}")
    return dg.MaterializeResult(
        metadata={
            "history": png_markdown({"Drift history": png}),
            "failed_days": dg.MetadataValue.md(history_markdown(history, serving_now)),
            **numbers_metadata({
                "days": (len(history), COUNT),
                "failed_day_count": (len(failed), COUNT),
                "days_with_report": (sum(day.check_passed is not None for day in history), COUNT),
            }),
            "serving_now": serving_now,
            "html_page": dg.MetadataValue.url(files.link(PAGE_KEY)),
            "html_page_path": dg.MetadataValue.path(page),
        }
    )


def _summary(report: str | None) -> dict | None:
    """The platform's drift summary stored in a day's JSON report (None when the day has none)."""
    if report is None:
        return None
    return json.loads(report).get(JSON_SUMMARY_KEY)


def _live_quality(instance: dg.DagsterInstance, days: list[str]) -> dict[str, tuple[float | None, int | None]]:
    """Per day: live RMSE and labelled rows from the latest `live_model_performance` materialization."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(QUALITY_ASSET), asset_partitions=days), limit=len(days) * 50
    ).records
    found: dict[str, tuple[float | None, int | None]] = {}
    for record in records:  # newest first: the first one seen per day is its latest
        if record.partition_key in found or record.asset_materialization is None:
            continue
        metadata = record.asset_materialization.metadata
        rmse = metadata.get("live_rmse_raw") or metadata.get("live_rmse")
        labelled = metadata.get("labelled_rows_raw") or metadata.get("labelled_rows")
        found[record.partition_key] = (_number(rmse), _number(labelled, int))
    return found


def _number(entry, kind=float):
    try:
        value = kind(entry.value) if entry is not None else None
    except (TypeError, ValueError):
        return None
    return None if value is None or value != value else value


def _follow_ups(instance: dg.DagsterInstance, registry: ModelRegistry, day: str, ui_url: str) -> tuple[FollowUp, ...]:
    """The retraining runs the sensor launched for a failed monitoring check of ``day``, oldest first.

    Either watched check counts: when drift and live quality fail on the same day, the sensor answers
    one of them and the run covers both (`core.retraining_policy`)."""
    records = instance.get_run_records(
        dg.RunsFilter(tags={PARTITION_TAG: day}), order_by="create_timestamp", ascending=True
    )
    follow_ups = []
    for record in records:
        run = record.dagster_run
        if run.tags.get(TRIGGER_TAG) is None:
            continue
        version, gate = _registered_version(instance, run.run_id)
        follow_ups.append(
            FollowUp(
                run_id=run.run_id,
                run_status=run.status.value,
                run_url=f"{ui_url.rstrip('/')}/runs/{run.run_id}",
                version=version,
                gate=gate,
                rollout=_rollout(registry, version),
                version_url=registry.version_url(version) if version else None,
                answers=run.tags.get(CHECK_TAG, ""),
            )
        )
    return tuple(follow_ups)


def _registered_version(instance: dg.DagsterInstance, run_id: str) -> tuple[str | None, str]:
    """The version a retraining run registered (None if none) and its gate's decision, from the run's events."""
    events = instance.get_records_for_run(
        run_id, of_type={dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.ASSET_CHECK_EVALUATION}
    ).records
    version, refused = None, []
    for record in events:
        event = record.event_log_entry.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            if evaluation.asset_key == dg.AssetKey("evaluation_report") and not evaluation.passed:
                refused.append(evaluation.check_name)
        elif event.asset_key == dg.AssetKey(REGISTRY_ASSET):
            entry = event.event_specific_data.materialization.metadata.get("version")
            version = str(entry.value) if entry is not None else None
    if refused:
        return version, f"refused ({', '.join(refused)})"
    return version, "passed" if version else "not reached"


def _rollout(registry: ModelRegistry, version: str | None) -> str:
    """Where ``version`` stands now: its aliases and approval status, e.g. "champion", "pending_approval"."""
    if version is None:
        return "nothing to roll out"
    try:
        aliases = registry.aliases_of(version)
        approval = registry.get_version(version).tags.get(APPROVAL_STATUS_TAG)
    except Exception as error:  # a version deleted from the registry is reported, not fatal
        return f"not in the registry ({type(error).__name__})"
    state = ", ".join(aliases) if aliases else "no alias (registered only)"
    if approval and PENDING_APPROVAL_ALIAS not in aliases:
        state += f"; approval {approval}"
    elif PENDING_APPROVAL_ALIAS in aliases:
        state += " (waits for a person: housing-platform approve|reject)"
    return state
