"""Safe rollout on a real server (uvicorn on loopback, the tiny registered models, a private registry copy).

Version 1 is champion; version 2 (every prediction moved by its output bias) becomes `challenger` through
the same alias moves the pipeline and the CLI use. Asserted: in shadow the answers are exactly the
champion's and both predictions are captured; in canary the challenger answers its share of 10,000 rows
within ±2 points, sticky per district and per routing key, and the response names the version per row;
after a promotion and a rollback the server answers from the version rolled back to.
"""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest

from housing_platform.adapters.alias_moves import (
    CHALLENGER_ALIAS,
    promote_challenger,
    reject_challenger,
    roll_back,
    set_rollout,
    start_rollout,
)
from housing_platform.adapters.mlflow_registry import ModelRegistry
from housing_platform.devtools.tiny_models import records
from housing_platform_tests.factories import make_districts
from housing_platform_tests.server.conftest import ThreadServer

pytestmark = pytest.mark.slow
POLL_SECONDS = 0.2


@pytest.fixture(scope="module")
def private(models, tmp_path_factory):
    """The tiny models in a registry copy of their own: alias moves here touch no other test module."""
    return models.private_copy(tmp_path_factory.mktemp("rollout_registry"))


@pytest.fixture(scope="module")
def registry(private) -> ModelRegistry:
    return ModelRegistry(private.tracking_uri, private.artifact_root)


@pytest.fixture(scope="module")
def server(private, registry, tmp_path_factory):
    capture_url = f"sqlite:///{tmp_path_factory.mktemp('capture') / 'capture.db'}"
    with ThreadServer(private, capture_url, poll_interval_seconds=POLL_SECONDS) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as http:
        yield http


def wait_ready(client, timeout=30.0, **expected):
    deadline = time.monotonic() + timeout
    while True:
        ready = client.get("/ready").json()
        if all(ready.get(key) == value for key, value in expected.items()):
            return ready
        assert time.monotonic() < deadline, f"/ready never showed {expected}: {ready}"
        time.sleep(0.05)


def counter(client, name: str) -> float:
    """A counter's value from /metrics (0 before its first increment is exposed as 0.0 too)."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not in /metrics")


def predict(client, rows, **headers):
    response = client.post("/v1/predict", json={"instances": records(rows)}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_shadow_answers_exactly_as_the_champion_alone_and_captures_both(client, server, registry, private):
    rows = private.test.head(300)
    alone = predict(client, rows)
    start_rollout(registry, "2", "shadow", 0.1, "test", "shadow test")
    wait_ready(client, challenger_version="2", rollout="shadow")
    shadowed = predict(client, rows)
    assert shadowed["predictions"] == alone["predictions"]  # bit for bit: the challenger is off the response path
    assert shadowed["model_version"] == "1" and "model_versions" not in shadowed
    assert server.state.flush_captures(30)
    captured = server.state.store.read_captures().set_index("request_id").loc[shadowed["request_ids"]]
    assert (captured["model_version"] == "1").all() and (captured["shadow_model_version"] == "2").all()
    assert np.array_equal(captured["prediction"].to_numpy(), np.asarray(alone["predictions"]))
    # The shadow scores are version 2's own answers for the rows: the same float64 fast path, here possibly
    # with another BLAS thread count (another summation order): a few ulps over ~100-term sums, far below 1e-9.
    from housing_platform.scoring.verification import load_fast_scorer

    expected = load_fast_scorer(private.model_source("2")).score(rows)
    np.testing.assert_allclose(captured["shadow_prediction"].to_numpy(dtype=float), expected, rtol=1e-9)
    # ... and they are not the champion's (except where both are clipped to the schema's price bounds).
    assert np.median(np.abs(expected - np.asarray(alone["predictions"]))) > 1.0
    assert counter(client, "housing_shadow_rows_total") == 300 and counter(client, "housing_challenger_rows_total") == 0


def test_shadow_scores_only_the_sampled_share_of_requests(client, server):
    wait_ready(client, challenger_version="2", rollout="shadow")  # runs after the shadow test
    rows = make_districts(20, seed=5)
    shadowed_before = counter(client, "housing_shadow_rows_total")
    server.state.config.shadow_sample_percent = 0.0  # no request sampled: the champion's capture alone
    try:
        unsampled = predict(client, rows)
    finally:
        server.state.config.shadow_sample_percent = 100.0
    sampled = predict(client, rows)
    assert server.state.flush_captures(30)
    captured = server.state.store.read_captures().set_index("request_id")
    assert captured.loc[unsampled["request_ids"], "shadow_model_version"].isna().all()
    assert (captured.loc[sampled["request_ids"], "shadow_model_version"] == "2").all()
    assert counter(client, "housing_shadow_rows_total") == shadowed_before + 20


def test_canary_answers_its_share_sticky_per_district_and_routing_key(client, server, registry):
    set_rollout(registry, "test", share=0.25, mode="canary")
    wait_ready(client, challenger_version="2", rollout="canary", rollout_share=0.25)
    rows = make_districts(10_000, seed=3)
    first = predict(client, rows)
    versions = np.asarray(first["model_versions"])
    assert set(versions) == {"1", "2"} and len(versions) == 10_000
    # 10,000 independent buckets at p = 0.25: the share's standard error is 0.43 points, so ±2 points is
    # 4.6 sigma; the hash is fixed (no seed), so this outcome is the same on every machine.
    assert abs((versions == "2").mean() - 0.25) <= 0.02
    assert counter(client, "housing_challenger_rows_total") == (versions == "2").sum()  # the first canary rows
    again = predict(client, rows.sample(frac=1.0, random_state=1).sort_index())
    assert again["model_versions"] == first["model_versions"]  # the same district meets the same model
    # 20,000 rows are now in memory at most, the capture bound (capture_queue_rows): let the writer commit them,
    # or the next request is rightly refused 503 on a machine where the writer lags (backpressure, not a bug).
    assert server.state.flush_captures(timeout=60)
    for key in ("client-a", "client-b", "client-c", "client-d", "client-e"):
        answers = {tuple(predict(client, rows.head(20), **{"X-Routing-Key": key})["model_versions"]) for _ in range(3)}
        assert len(answers) == 1 and len(set(next(iter(answers)))) == 1  # one model per key, every time


def test_promotion_then_rollback_is_served_within_the_poll_interval(client, registry, private):
    promote_challenger(registry, "test", "promotion test")
    wait_ready(client, serving_version="2", challenger_version=None)
    rows = private.test.head(5)
    assert predict(client, rows)["model_version"] == "2"
    moved = time.monotonic()
    roll_back(registry, "test", "rollback test")
    wait_ready(client, serving_version="1")
    served_after = time.monotonic() - moved
    assert predict(client, rows)["model_version"] == "1"
    assert served_after < 30  # loose: the point is that the server follows; the figure goes in the report
    print(f"rollback served {served_after:.2f} s after the alias moved (poll {POLL_SECONDS} s)")


def test_a_rejected_challenger_stops_being_served(client, registry):
    start_rollout(registry, "2", "canary", 0.5, "test", "again")
    wait_ready(client, challenger_version="2")
    reject_challenger(registry, "test", "worse")
    ready = wait_ready(client, challenger_version=None)
    assert ready["serving_version"] == "1" and registry.version_by_alias(CHALLENGER_ALIAS) is None
