"""Helpers shared by the capture tests: records built from the example district, and polling."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from housing_platform.adapters.capture.records import CaptureRecord
from housing_platform.core.schema import EXAMPLE_DISTRICT

FEATURES = dict(EXAMPLE_DISTRICT)


def make_records(n: int, *, start: datetime | None = None, **overrides) -> list[CaptureRecord]:
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


def wait_until(predicate, timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)
