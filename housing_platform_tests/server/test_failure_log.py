"""Model failures on the server side without a server: which version a non-finite row is charged to, and the
in-memory log that keeps its counts while the store is unreachable and writes them, aggregated, once it is back."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Counter

from housing_platform.adapters.capture.failures import FINITE_PREDICTION, SCORING_ERROR, read_failures
from housing_platform.adapters.capture.store import CaptureStore
from housing_platform.server.failures import FailureLog, ModelFailure, check_finite


def test_finite_predictions_pass_and_non_finite_rows_are_charged_to_the_version_that_answered_them():
    check_finite(np.array([1.0, 2.0]), "1", None)  # no exception: nothing failed
    with pytest.raises(ModelFailure) as caught:
        check_finite(np.array([1.0, np.nan, np.inf, 4.0, -np.inf]), "1", ["1", "2", "2", "1", "1"])
    failure = caught.value
    assert failure.status == 422 and failure.rule == FINITE_PREDICTION
    assert failure.rows_by_version == {"2": 2, "1": 1}
    assert [item["row"] for item in failure.body["detail"]] == [1, 2, 4] and failure.rows == 3
    with pytest.raises(ModelFailure) as alone:
        check_finite(np.array([np.nan, 1.0]), "7", None)
    assert alone.value.rows_by_version == {"7": 1}


def test_counts_are_kept_while_the_store_is_down_and_written_aggregated_when_it_is_back(tmp_path):
    registry = CollectorRegistry()
    metric = Counter("failed_rows", "test", ["model_version", "rule"], registry=registry)
    blocker = tmp_path / "capture"
    blocker.write_text("a file where the capture database's folder should be")
    store = CaptureStore(f"sqlite:///{blocker / 'capture.db'}")
    log = FailureLog(metric)
    log.start(store, interval_seconds=3600)  # the periodic flush never runs here: flushes are explicit
    try:
        log.record("2", FINITE_PREDICTION, 3)
        log.record("2", FINITE_PREDICTION, 4)
        log.record("1", SCORING_ERROR, 10)
        log.record("1", SCORING_ERROR, 0)  # nothing failed: not a failed request either
        assert not log.flush()  # the folder is blocked: nothing written, nothing lost
        log.record("2", FINITE_PREDICTION, 1)
        assert log.pending() == {("2", FINITE_PREDICTION): (8, 3), ("1", SCORING_ERROR): (10, 1)}
        blocker.unlink()
        assert log.close(timeout=5)  # the final flush at shutdown
        frame = read_failures(store)
    finally:
        store.dispose()
    written = {(r.model_version, r.rule): (r.failed_rows, r.failed_requests) for r in frame.itertuples()}
    assert written == {("2", FINITE_PREDICTION): (8, 3), ("1", SCORING_ERROR): (10, 1)}  # one row per aggregate
    assert log.pending() == {}
    assert registry.get_sample_value("failed_rows_total", {"model_version": "2", "rule": FINITE_PREDICTION}) == 8
    assert registry.get_sample_value("failed_rows_total", {"model_version": "1", "rule": SCORING_ERROR}) == 10


def test_failures_reach_the_store_at_the_capture_sampling_rate_and_metrics_count_them_all(tmp_path):
    """At capture_sample_percent 20 the store keeps a fifth of the failed rows (as of the answered rows), so the
    error rate read from it is unbiased; /metrics counts every one."""
    registry = CollectorRegistry()
    metric = Counter("failed_rows", "test", ["model_version", "rule"], registry=registry)
    store = CaptureStore(f"sqlite:///{tmp_path / 'capture.db'}")
    log = FailureLog(metric, sample_percent=20.0, rng=np.random.default_rng(7))
    log.start(store, interval_seconds=3600)
    try:
        for _ in range(1_000):
            log.record("2", FINITE_PREDICTION, 10)  # 10,000 failed rows in 1,000 requests
        assert log.close()
        stored = int(read_failures(store)["failed_rows"].sum())
    finally:
        store.dispose()
    assert registry.get_sample_value("failed_rows_total", {"model_version": "2", "rule": FINITE_PREDICTION}) == 10_000
    # Binomial(10,000, 0.2): mean 2,000, standard deviation 40; ±200 is 5 sigma (and the seed is fixed).
    assert abs(stored - 2_000) <= 200
