"""A capture store written before the safe rollout's shadow columns existed gets them, and keeps its rows."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from housing_platform.adapters.capture.records import CaptureRecord
from housing_platform.adapters.capture.store import CaptureStore
from housing_platform.adapters.capture.tables import captures_table, feedback_table

NEW_COLUMNS = ("shadow_model_version", "shadow_prediction")
FEATURES = {"longitude": -122.2, "latitude": 37.8, "housing_median_age": 20.0, "total_rooms": 1_000.0,
            "total_bedrooms": 200.0, "population": 500.0, "households": 180.0, "median_income": 4.0,
            "ocean_proximity": "NEAR BAY"}


def test_an_old_store_gains_the_shadow_columns_and_keeps_its_rows(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = sa.MetaData()
    old_captures = sa.Table("captures", old, *(c._copy() for c in captures_table.columns if c.name not in NEW_COLUMNS))
    sa.Table("feedback", old, *(c._copy() for c in feedback_table.columns))
    engine = sa.create_engine(url)
    row = CaptureRecord.from_features(FEATURES, prediction=250_000.0, model_version="1", latency_ms=1.0,
                                      captured_at=datetime(2026, 1, 1, tzinfo=UTC))
    with engine.begin() as conn:
        old.create_all(conn)
        conn.execute(old_captures.insert(), [dict(zip(old_captures.columns.keys(), row[:-2]))])
    engine.dispose()

    store = CaptureStore(url)
    try:
        shadowed = row._replace(request_id="f" * 32, shadow_model_version="2", shadow_prediction=260_000.0)
        store.insert_captures([shadowed])
        frame = store.read_captures().set_index("request_id")
    finally:
        store.dispose()
    assert frame.loc[row.request_id, "shadow_model_version"] is None  # the old row: null, not lost
    assert frame.loc["f" * 32, ["shadow_model_version", "shadow_prediction"]].tolist() == ["2", 260_000.0]
