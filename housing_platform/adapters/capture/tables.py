"""The capture store's tables in SQLAlchemy Core, so one definition serves SQLite and PostgreSQL:
``captures`` (one row per scored district: features, prediction, model version, latency, the features
outside the training range), ``feedback`` (the true value, once known, keyed by the capture's
request id) and ``scoring_failures`` (rows a model version could not answer, aggregated per flush:
:mod:`.failures`), with :data:`CAPTURE_COLUMNS`, the column order records are written in.
"""

from __future__ import annotations

from datetime import UTC

from sqlalchemy import Column, DateTime, Float, ForeignKey, Integer, MetaData, String, Table
from sqlalchemy.types import TypeDecorator

from housing_platform.core.schema import CATEGORICAL_COLUMN, FEATURE_COLUMNS, NULL_ALLOWANCE, TARGET_COLUMN


class UTCDateTime(TypeDecorator):
    """A timestamp stored in UTC and always read back timezone-aware (UTC).

    Naive datetimes are taken to be UTC already. SQLite has no timezone type, so the value is
    stored there as naive UTC text, which still sorts and compares correctly.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

# A feature column is nullable exactly when the schema allows it nulls (today: total_bedrooms).
captures_table = Table(
    "captures",
    metadata,
    Column("request_id", String, primary_key=True, comment="UUIDv7 hex chosen by the server (time-ordered)"),
    Column("captured_at", UTCDateTime, nullable=False, index=True),
    Column("model_version", String, nullable=False),
    *(
        Column(name, String if name == CATEGORICAL_COLUMN else Float, nullable=NULL_ALLOWANCE[name] > 0)
        for name in FEATURE_COLUMNS
    ),
    Column("prediction", Float, nullable=False, comment="USD"),
    Column("latency_ms", Float, nullable=False),
    Column(
        "out_of_range",
        String,
        nullable=False,
        default="",
        comment="comma-separated features outside the training range; empty if none",
    ),
    # Safe rollout (core/rollout.py): the challenger's version and prediction when it scored a shadow copy of
    # the row (the champion answered); null otherwise. Added to older stores by capture/migrations.py.
    Column("shadow_model_version", String, nullable=True),
    Column("shadow_prediction", Float, nullable=True, comment="USD"),
)

feedback_table = Table(
    "feedback",
    metadata,
    Column(
        "request_id",
        String,
        ForeignKey("captures.request_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column(TARGET_COLUMN, Float, nullable=False, comment="the true value, USD"),
    Column("received_at", UTCDateTime, nullable=False),
    Column("feedback_token", String, nullable=True, comment="id of the API token that sent it; null: no auth"),
)

# Rows a version was asked to score and could not answer (a non-finite prediction, an exception while scoring),
# counted in memory by each server and flushed aggregated (server/failures.py). A store created before it gets it
# from metadata.create_all, which creates missing tables (capture/migrations.py covers missing columns).
scoring_failures_table = Table(
    "scoring_failures",
    metadata,
    Column("recorded_at", UTCDateTime, nullable=False, index=True, comment="the first failure of the aggregate"),
    Column("model_version", String, nullable=False),
    Column("rule", String, nullable=False, comment="finite_prediction | scoring_error"),
    Column("failed_rows", Integer, nullable=False),
    Column("failed_requests", Integer, nullable=False),
)

CAPTURE_COLUMNS = tuple(column.name for column in captures_table.columns)
