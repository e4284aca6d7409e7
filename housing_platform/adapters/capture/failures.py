"""Rows a model version could not answer, in the capture store's ``scoring_failures`` table.

Every server replica shares the capture store, so this is where the rollout decisions
(``defs/rollout/evidence.py``) find each version's error rate. A server never writes a row per failed
request: it counts failures in memory per (version, rule) and flushes the aggregates periodically and
at shutdown (``server/failures.py``), one row per (version, rule) per flush, stamped with the time of
the first failure it aggregates. Only model-attributable failures are recorded — schema-valid rows the
model answered with a non-finite number (:data:`FINITE_PREDICTION`) or could not score because scoring
raised (:data:`SCORING_ERROR`); a client's invalid request is never one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
from sqlalchemy import select

from housing_platform.adapters.capture.errors import is_transient
from housing_platform.adapters.capture.store import CaptureStore
from housing_platform.adapters.capture.tables import scoring_failures_table

FINITE_PREDICTION = "finite_prediction"  # the model's prediction for a schema-valid row is NaN or infinite
SCORING_ERROR = "scoring_error"  # scoring raised: every row the version was asked to score failed
RULES = (FINITE_PREDICTION, SCORING_ERROR)
FAILURE_COLUMNS = tuple(column.name for column in scoring_failures_table.columns)


@dataclass(frozen=True, slots=True)
class FailureRow:
    """One aggregate: ``failed_rows`` rows in ``failed_requests`` requests of ``model_version`` from ``recorded_at``."""

    recorded_at: datetime
    model_version: str
    rule: str
    failed_rows: int
    failed_requests: int


def insert_failures(store: CaptureStore, rows: Sequence[FailureRow]) -> None:
    """Insert the aggregates in one transaction; errors propagate (the caller keeps the counts and retries)."""
    if not rows:
        return
    try:
        store.ensure_schema()
        with store.engine.begin() as conn:
            conn.execute(scoring_failures_table.insert(), [
                {"recorded_at": row.recorded_at, "model_version": str(row.model_version), "rule": row.rule,
                 "failed_rows": int(row.failed_rows), "failed_requests": int(row.failed_requests)}
                for row in rows
            ])
        if store.file_watch is not None:
            store.file_watch.check_after_commit()
    except Exception as exc:
        if is_transient(exc):
            store._schema_lost()  # as insert_captures: the tables are checked again before the next write
        raise


def read_failures(store: CaptureStore, start: datetime | None = None, end: datetime | None = None) -> pd.DataFrame:
    """The aggregates recorded in ``[start, end)`` (either bound optional), oldest first, a column per table column."""
    store.ensure_schema()
    table = scoring_failures_table
    stmt = select(table)
    if start is not None:
        stmt = stmt.where(table.c.recorded_at >= start)
    if end is not None:
        stmt = stmt.where(table.c.recorded_at < end)
    with store.engine.connect() as conn:
        rows = conn.execute(stmt.order_by(table.c.recorded_at)).all()
    frame = pd.DataFrame.from_records(rows, columns=list(FAILURE_COLUMNS))
    frame["recorded_at"] = pd.to_datetime(frame["recorded_at"], utc=True)
    frame["model_version"] = frame["model_version"].astype(object)
    for column in ("failed_rows", "failed_requests"):
        frame[column] = frame[column].astype("int64")
    return frame


def failed_rows_by_version(frame: pd.DataFrame) -> dict[str, int]:
    """Failed rows per model version (every rule) in a :func:`read_failures` frame."""
    if not len(frame):
        return {}
    return {str(k): int(v) for k, v in frame.groupby(frame["model_version"].astype(str))["failed_rows"].sum().items()}
