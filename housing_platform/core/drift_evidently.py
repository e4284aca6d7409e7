"""The Evidently side of the drift report: run its drift preset and read each column's verdict back.

``drift.py`` decides methods, thresholds (with their noise floors) and the platform's verdict;
this module only turns those into an Evidently ``Report`` (``DataDriftPreset`` for the features,
``ValueDrift`` for the prediction, with tests so each column carries pass/fail) and reads the
snapshot into a typed table with one row per column (:data:`TABLE_COLUMNS`).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.core.report import Snapshot
from evidently.metrics import ValueDrift
from evidently.presets import DataDriftPreset

from housing_platform.core.schema import CATEGORICAL_COLUMN, FEATURE_COLUMNS, NUMERIC_FEATURE_COLUMNS

TABLE_COLUMNS = ("column", "method", "score", "threshold", "drifted")
_VALUE_DRIFT_TYPE = "evidently:metric_v2:ValueDrift"


def run_evidently_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    methods: dict[str, str],
    thresholds: dict[str, float],
    drift_share: float,
    prediction_column: str | None,
) -> Snapshot:
    numerical = [*NUMERIC_FEATURE_COLUMNS, *([prediction_column] if prediction_column else [])]
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=[CATEGORICAL_COLUMN])
    metrics: list[Any] = [
        # Features only, so Evidently's own "share of drifted columns" is our dataset-drift share.
        DataDriftPreset(
            columns=list(FEATURE_COLUMNS),
            drift_share=drift_share,
            per_column_method={c: methods[c] for c in FEATURE_COLUMNS},
            per_column_threshold={c: thresholds[c] for c in FEATURE_COLUMNS},
        )
    ]
    if prediction_column:
        metrics.append(
            ValueDrift(
                column=prediction_column, method=methods[prediction_column], threshold=thresholds[prediction_column]
            )
        )
    # include_tests: every ValueDrift then carries a pass/fail test, which is where "drifted" is read
    # from (the direction of the comparison depends on the method: distance >= t, p-value < t).
    report = Report(metrics, include_tests=True)
    return report.run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )


def drift_table(snapshot: Snapshot, columns: list[str]) -> pd.DataFrame:
    """One row per column from the snapshot's ValueDrift metrics and their tests."""
    exported = snapshot.dict()
    failed_metric_ids = {
        test["metric_config"]["metric_id"]: _status(test["status"]) == "FAIL" for test in exported["tests"]
    }
    rows = {}
    for metric in exported["metrics"]:
        config = metric["config"]
        if config.get("type") != _VALUE_DRIFT_TYPE:
            continue
        if metric["id"] not in failed_metric_ids:
            raise RuntimeError(f"Evidently returned no drift test for column '{config['column']}'")
        rows[config["column"]] = {
            "column": config["column"],
            "method": str(config["method"]),
            "score": float(metric["value"]),
            "threshold": float(config["threshold"]),
            "drifted": failed_metric_ids[metric["id"]],
        }
    missing = [c for c in columns if c not in rows]
    if missing:
        raise RuntimeError(f"Evidently returned no drift score for {missing}")
    return typed_table([rows[c] for c in columns])


def typed_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    dtypes = {"column": object, "method": object, "score": "float64", "threshold": "float64", "drifted": bool}
    return table.astype(dtypes)


def _status(status: Any) -> str:
    return str(getattr(status, "value", status))
