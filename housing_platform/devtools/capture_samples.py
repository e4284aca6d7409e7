"""Capture records of the example district, for the capture tests and the capture benchmark.

Each record carries the schema's example district as its features, a distinct prediction and a
capture time one millisecond after the previous one, so ordering and time windows are testable.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from housing_platform.adapters.capture.records import CaptureRecord
from housing_platform.core.schema import EXAMPLE_DISTRICT

FEATURES = dict(EXAMPLE_DISTRICT)


def make_records(n: int, *, start: datetime | None = None, **overrides) -> list[CaptureRecord]:
    """``n`` records of the example district from ``start`` (now), 1 ms apart; ``overrides`` set fields."""
    start = start or datetime.now(UTC)
    return [
        CaptureRecord.from_features(
            FEATURES,
            prediction=450_000.0 + i,
            model_version="3",
            latency_ms=1.5,
            captured_at=start + timedelta(milliseconds=i),
            **overrides,
        )
        for i in range(n)
    ]
