"""Labels: the one way labelled live traffic reaches training, through a gate like the data's.

`labelled_traffic` reads the labelled captures, judges the ones never judged before (schema, volume
per source and day, consistency with the trusted test split — `core.label_consistency`), records
every judged row in the capture database's review tables (`adapters/capture/label_reviews.py`) as
admitted or held, and returns the rows training may use: admitted ones and those a person approved
(`housing-platform labels approve`). Its three blocking checks (`checks.py`) fail when this run held
rows, naming how many, from which source, the effect size and why. Run config is in `config.py`.
"""


import dagster as dg
import numpy as np
import pandas as pd

from housing_platform.adapters.capture.label_reviews import ADMITTED, HELD, TRAINABLE, LabelReviews, NewBatch
from housing_platform.core import label_consistency as consistency
from housing_platform.core import live_quality
from housing_platform.core.schema import ALL_COLUMNS, FEATURE_COLUMNS, TARGET_COLUMN
from housing_platform.core.splits import assign_split
from housing_platform.core.validation import FAILED_RULES_COLUMN, SOURCE_ROW_COLUMN, validate_housing_frame
from housing_platform.defs.code_versions import asset_code_version
from housing_platform.defs.labels.checks import (
    CONSISTENCY_CHECK,
    SCHEMA_CHECK,
    VOLUME_CHECK,
    label_check_specs,
)
from housing_platform.defs.labels.config import LabelGateConfig
from housing_platform.defs.metadata import COUNT, SCORE, markdown_table, number_metadata, numbers_metadata
from housing_platform.defs.resources import CaptureStoreResource, MLflowResource

GROUP = "labels"
OWNERS = ["team:ml-platform"]
UNATTRIBUTED = "unattributed"
STATUS_COLUMN = "label_status"
OUTPUT_COLUMNS = ["request_id", *ALL_COLUMNS, consistency.SOURCE_COLUMN, STATUS_COLUMN]


def _sources(labelled: pd.DataFrame, column: str) -> tuple[pd.Series, str]:
    """Who sent each label, and a sentence saying which key stood for it."""
    if column in labelled.columns:
        unattributed = int(labelled[column].isna().sum())
        note = f" ({unattributed:,} labels without one count as '{UNATTRIBUTED}')" if unattributed else ""
        return labelled[column].fillna(UNATTRIBUTED).astype(str), f"column {column}{note}"
    return (pd.Series(UNATTRIBUTED, index=labelled.index, dtype=object),
            f"column {column} is not in the capture store: every label counts as one source, '{UNATTRIBUTED}'")


def _schema_holds(new: pd.DataFrame) -> pd.Series:
    """Per new row, the schema rules it breaks ('' if none): the raw data's pandera rules."""
    reasons = pd.Series("", index=new.index, dtype=object)
    if new.empty:
        return reasons
    outcome = validate_housing_frame(new[list(ALL_COLUMNS)])
    positions = outcome.quarantine[SOURCE_ROW_COLUMN].astype(int).to_numpy() - 2  # header is line 1
    reasons.iloc[positions] = ("breaks " + outcome.quarantine[FAILED_RULES_COLUMN].astype(str)).to_numpy()
    return reasons


def _batches(new: pd.DataFrame, rule: str, reasons: pd.Series, details: dict | None = None) -> list[NewBatch]:
    """One batch per source of the rows ``reasons`` holds, its reason the commonest one of its rows."""
    held = new[reasons != ""]
    return [
        NewBatch(rule, source, reasons.loc[rows.index].value_counts().index[0], list(rows["request_id"]),
                 {**(details or {}), "reasons": reasons.loc[rows.index].value_counts().head(5).to_dict()})
        for source, rows in held.groupby(consistency.SOURCE_COLUMN, sort=True)
    ]


def _held_summary(batches: list[NewBatch], ids: list[int]) -> str:
    return "; ".join(f"batch {i}: {len(b.request_ids):,} rows from {b.source} — {b.reason}" for b, i in zip(batches, ids))


@dg.asset(
    group_name=GROUP,
    kinds={"pandas", "sqlalchemy", "scipy"},
    owners=OWNERS,
    code_version=asset_code_version("labelled_traffic", LabelGateConfig),
    tags={"stage": "training"},
    check_specs=label_check_specs(),
)
def labelled_traffic(
    context: dg.AssetExecutionContext,
    config: LabelGateConfig,
    capture_store: CaptureStoreResource,
    mlflow_tracking: MLflowResource,
    validated_housing_data: pd.DataFrame,
):
    """Labelled live traffic that training may learn from: fed-back labels that passed the label gate.

    Anyone who can reach the server can send labels, so labels are data and pass a gate like data:
    each label not judged before must lie in the district schema (the target's range included), come
    from a source within its daily volume, and agree with the trusted test split — the champion's
    residuals and the labels themselves, per source, per `ocean_proximity` slice and overall
    (`core.label_consistency`). Rows that fail are **held**, not dropped and not trained on: recorded
    as a batch with its reason (`housing-platform labels list`) until a person approves or rejects it.
    The value is every admitted or approved labelled capture; `training_data` reads it.
    """
    limits = config.to_limits()
    store = capture_store.store()
    try:
        reviews = LabelReviews(store)
        captured = store.read_captures(with_feedback=True)
        labelled = live_quality.labelled(captured).reset_index(drop=True)
        sources, source_key = _sources(labelled, config.source_column)
        labelled = labelled.assign(**{consistency.SOURCE_COLUMN: sources})
        statuses = reviews.row_statuses()
        status = labelled["request_id"].map(statuses)
        new = labelled[status.isna().to_numpy()].reset_index(drop=True)
        received = pd.to_datetime(new["feedback_received_at"], utc=True)
        new[consistency.DAY_COLUMN] = received.dt.strftime("%Y-%m-%d")

        schema = _schema_holds(new)
        volume = consistency.volume_holds(new[schema == ""], limits).reindex(new.index, fill_value="")
        judged = new[(schema == "") & (volume == "")]
        result, champion_version = _consistency(context, mlflow_tracking, judged, validated_housing_data, limits)
        consistent = result.reasons.reindex(new.index, fill_value="")

        held = {
            SCHEMA_CHECK: _batches(new, "schema", schema),
            VOLUME_CHECK: _batches(new, "volume", volume, {"limit_per_day": limits.max_labels_per_source_per_day}),
            CONSISTENCY_CHECK: _batches(new, "consistency", consistent, {"champion_version": champion_version}),
        }
        admitted_mask = (schema == "") & (volume == "") & (consistent == "")
        admitted = _batches(new, "admitted", pd.Series(np.where(admitted_mask, "passed the label gate", ""),
                                                         index=new.index))
        run_id = context.run.run_id
        held_ids = {name: reviews.record(batches, status=HELD, run_id=run_id) for name, batches in held.items()}
        reviews.record(admitted, status=ADMITTED, run_id=run_id, decided_by="labelled_traffic")
        statuses = reviews.row_statuses()
        pending = reviews.batches(HELD)
    finally:
        store.dispose()

    status = labelled["request_id"].map(statuses)
    trainable = labelled.assign(**{STATUS_COLUMN: status})[status.isin(TRAINABLE).to_numpy()]
    trainable = trainable[OUTPUT_COLUMNS].reset_index(drop=True)
    held_rows = {name: sum(len(b.request_ids) for b in batches) for name, batches in held.items()}
    context.log.info(
        f"{len(labelled):,} labelled captures, {len(new):,} new: {int(admitted_mask.sum()):,} admitted, "
        f"held {held_rows}; {len(trainable):,} trainable; sources from {source_key}"
    )
    yield dg.Output(
        trainable,
        metadata={
            **numbers_metadata({
                "row_count": (len(trainable), COUNT),
                "labelled_captures": (len(labelled), COUNT),
                "new_labels": (len(new), COUNT),
                "admitted_now": (int(admitted_mask.sum()), COUNT),
                "held_now": (sum(held_rows.values()), COUNT),
                "held_pending_review": (int(pending["row_count"].sum()) if len(pending) else 0, COUNT),
                "approved_rows": (int((trainable[STATUS_COLUMN] == "approved").sum()), COUNT),
            }),
            "source_key": source_key,
            "champion_version": str(champion_version or "none"),
        },
    )
    consistency_groups = result.groups.astype({"rows": int}) if len(result.groups) else result.groups
    schema_share = held_rows[SCHEMA_CHECK] / max(len(new), 1)
    common = {"source_key": source_key, **number_metadata("new_labels", len(new), COUNT)}
    yield dg.AssetCheckResult(
        check_name=SCHEMA_CHECK,
        passed=schema_share <= config.max_schema_failure_share,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"{held_rows[SCHEMA_CHECK]:,} of {len(new):,} new labels break the schema ({schema_share:.2%}, "
        f"limit {config.max_schema_failure_share:.0%}); held: " + (_held_summary(held[SCHEMA_CHECK], held_ids[SCHEMA_CHECK]) or "none"),
        metadata={**common, **number_metadata("held_rows", held_rows[SCHEMA_CHECK], COUNT),
                  "held_batches": ", ".join(map(str, held_ids[SCHEMA_CHECK])) or "none"},
    )
    yield dg.AssetCheckResult(
        check_name=VOLUME_CHECK,
        passed=held_rows[VOLUME_CHECK] == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(_held_summary(held[VOLUME_CHECK], held_ids[VOLUME_CHECK])
                     or f"every source within {limits.max_labels_per_source_per_day:,} labels per day"),
        metadata={**common, **number_metadata("held_rows", held_rows[VOLUME_CHECK], COUNT),
                  "held_batches": ", ".join(map(str, held_ids[VOLUME_CHECK])) or "none",
                  "labels_per_source": dg.MetadataValue.json(new[consistency.SOURCE_COLUMN].value_counts().to_dict())},
    )
    by_source = {b.source: len(b.request_ids) for b in held[CONSISTENCY_CHECK]}
    fired = consistency_groups[consistency_groups["held"].astype(bool)] if len(consistency_groups) else consistency_groups
    yield dg.AssetCheckResult(
        check_name=CONSISTENCY_CHECK,
        passed=held_rows[CONSISTENCY_CHECK] == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        description=result.description,
        metadata={
            **common,
            **number_metadata("held_rows", held_rows[CONSISTENCY_CHECK], COUNT),
            "held_by_source": dg.MetadataValue.json(by_source),
            "held_batches": ", ".join(map(str, held_ids[CONSISTENCY_CHECK])) or "none",
            **number_metadata("largest_median_ratio",
                              float(fired["median_ratio_vs_trusted"].max()) if len(fired) else None, SCORE),
            "reason": result.description,
            "champion_version": str(champion_version or "none"),
            "groups": markdown_table(consistency_groups, rows=60, floatfmt=".3g") if len(consistency_groups) else "not judged",
        },
    )


def _consistency(context, mlflow_tracking: MLflowResource, judged: pd.DataFrame, validated: pd.DataFrame,
                 limits: consistency.LabelGateLimits) -> tuple[consistency.ConsistencyResult, str | None]:
    """The consistency verdict on ``judged`` rows, scored by the current champion (not judged without one)."""
    empty = pd.DataFrame(columns=consistency.GROUP_COLUMNS)
    if judged.empty:
        return consistency.ConsistencyResult(False, "no new labels to judge", empty,
                                             pd.Series("", index=judged.index, dtype=object)), None
    registry = mlflow_tracking.registry()
    champion = registry.champion()
    if champion is None:
        return consistency.ConsistencyResult(False, "not judged: no champion to compare labels with", empty,
                                             pd.Series("", index=judged.index, dtype=object)), None
    model = registry.load_pyfunc(champion.model_uri)
    trusted = validated[assign_split(validated).to_numpy() == "test"].reset_index(drop=True)
    trusted = trusted.assign(prediction=np.asarray(model.predict(trusted[list(FEATURE_COLUMNS)]), dtype=float))
    scored = judged.assign(prediction=np.asarray(model.predict(judged[list(FEATURE_COLUMNS)]), dtype=float))
    context.log.info(f"label consistency: champion v{champion.version} on {len(scored):,} new labels "
                     f"vs {len(trusted):,} trusted test rows")
    return consistency.judge_consistency(scored, trusted[[*FEATURE_COLUMNS, TARGET_COLUMN, "prediction"]], limits), \
        champion.version
