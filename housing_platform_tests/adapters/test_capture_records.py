"""Capture records and the sampling rule, without a database."""

from __future__ import annotations

from datetime import UTC

import pytest

from housing_platform.adapters.capture.records import (
    SAMPLING_BUCKETS,
    CaptureRecord,
    is_sampled,
    keep_sampled,
    record_params,
    sampling_threshold,
)
from housing_platform.adapters.capture.tables import CAPTURE_COLUMNS
from housing_platform.devtools.capture_samples import FEATURES, make_records


def test_a_record_from_features_fills_id_and_time_and_converts_values():
    record = CaptureRecord.from_features(
        {**FEATURES, "total_rooms": 880, "total_bedrooms": None},
        prediction=452_600,
        model_version="3",
        latency_ms=1,
        out_of_range=["median_income", "longitude"],
    )

    assert len(record.request_id) == 32 and record.captured_at.tzinfo is UTC
    assert record.total_rooms == 880.0 and isinstance(record.total_rooms, float)
    assert record.total_bedrooms is None and record.out_of_range == "median_income,longitude"
    assert list(record_params(record)) == list(CAPTURE_COLUMNS) == list(CaptureRecord._fields)


def test_a_record_missing_a_feature_is_refused_naming_it():
    with pytest.raises(ValueError, match="latitude"):
        CaptureRecord.from_features(
            {k: v for k, v in FEATURES.items() if k != "latitude"}, prediction=1.0, model_version="1", latency_ms=1.0
        )


@pytest.mark.parametrize("percent", [0, 0.01, 30, 99.99, 100])
def test_keep_sampled_applies_the_same_rule_as_is_sampled(percent):
    records = make_records(2000)

    kept = keep_sampled(records, sampling_threshold(percent))

    assert [r.request_id for r in kept] == [r.request_id for r in records if is_sampled(r.request_id, percent)]


def test_sampling_percentages_outside_0_to_100_are_refused():
    assert sampling_threshold(100) == SAMPLING_BUCKETS and sampling_threshold(0) == 0
    for percent in (-0.5, 100.5):
        with pytest.raises(ValueError, match="between 0 and 100"):
            sampling_threshold(percent)
