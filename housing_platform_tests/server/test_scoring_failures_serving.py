"""Rows a model version could not answer, on a real server (uvicorn on loopback, the tiny registered models,
a private registry copy): recorded per version in the capture store's `scoring_failures` and counted in
/metrics, while a client's invalid request is not.

Version 2 becomes the challenger through the same alias moves the pipeline uses; once the server has loaded
it, its fast scorer is swapped for a broken copy (``broken_scorers.py``: every prediction non-finite, or every
score raising ValueError), so the real scoring path fails the way a broken network would. The champion is
left intact.
"""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest

from housing_platform.adapters.alias_moves import set_rollout, start_rollout
from housing_platform.adapters.capture.failures import FINITE_PREDICTION, SCORING_ERROR, read_failures
from housing_platform.adapters.mlflow_registry import ModelRegistry
from housing_platform.core.rollout_routing import challenger_rows, feature_buckets, key_bucket
from housing_platform.devtools.tiny_models import records
from housing_platform.server.requests import parse_instances
from housing_platform_tests.factories import make_districts
from housing_platform_tests.server.broken_scorers import break_challenger, non_finite_output, raising_output
from housing_platform_tests.server.conftest import ThreadServer

pytestmark = pytest.mark.slow
SHARE = 0.5


@pytest.fixture(scope="module")
def private(models, tmp_path_factory):
    return models.private_copy(tmp_path_factory.mktemp("failures_registry"))


@pytest.fixture(scope="module")
def registry(private) -> ModelRegistry:
    return ModelRegistry(private.tracking_uri, private.artifact_root)


@pytest.fixture(scope="module")
def server(private, tmp_path_factory):
    capture_url = f"sqlite:///{tmp_path_factory.mktemp('capture') / 'capture.db'}"
    # An hour between periodic flushes: the store holds exactly what flush_captures() wrote.
    with ThreadServer(private, capture_url, poll_interval_seconds=0.2, failure_flush_seconds=3600) as running:
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


def stored_failures(server) -> dict[tuple[str, str], tuple[int, int]]:
    """(failed rows, failed requests) per (version, rule) in the store, after flushing what the server counted."""
    assert server.state.flush_captures(30)
    totals: dict[tuple[str, str], tuple[int, int]] = {}
    for row in read_failures(server.state.store).itertuples():
        rows, requests = totals.get((row.model_version, row.rule), (0, 0))
        totals[(row.model_version, row.rule)] = (rows + row.failed_rows, requests + row.failed_requests)
    return totals


def failed_rows_metric(client, version: str, rule: str) -> float | None:
    prefix = f'housing_model_failed_rows_total{{model_version="{version}",rule="{rule}"}} '
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    return None


def challenger_mask(frame) -> np.ndarray:
    """Which rows the canary routes to the challenger, computed as the server does (no routing key)."""
    instances = parse_instances({"instances": records(frame)}, 10_000)
    return challenger_rows(feature_buckets(instances.numeric, instances.categories), SHARE)


def champion_key() -> str:
    return next(k for k in (f"client-{i}" for i in range(1000))
                if not challenger_rows(np.array([key_bucket(k)]), SHARE)[0])


def challenger_key() -> str:
    return next(k for k in (f"client-{i}" for i in range(1000)) if challenger_rows(np.array([key_bucket(k)]), SHARE)[0])


def test_canary_non_finite_rows_are_the_challengers_and_a_clients_invalid_rows_are_nobodys(client, server, registry):
    start_rollout(registry, "2", "canary", SHARE, "test", "failures test")
    wait_ready(client, challenger_version="2", rollout="canary", rollout_share=SHARE)
    break_challenger(server.state, non_finite_output, "2")
    rows = make_districts(40, seed=11)
    mask = challenger_mask(rows)
    assert 0 < mask.sum() < len(rows)  # a mixed request: both versions asked

    mixed = client.post("/v1/predict", json={"instances": records(rows)})
    assert mixed.status_code == 422, mixed.text
    body = mixed.json()
    assert body["errors_total"] == mask.sum()
    assert [item["row"] for item in body["detail"]] == np.flatnonzero(mask).tolist()
    assert {item["rule"] for item in body["detail"]} == {"finite prediction"}
    # The champion's rows of the same request were answered finitely: not its failures.
    answered = client.post("/v1/predict", json={"instances": records(rows.head(10))},
                           headers={"X-Routing-Key": champion_key()})
    assert answered.status_code == 200 and set(answered.json()["model_versions"]) == {"1"}
    invalid = records(rows.head(3))
    invalid[1]["median_income"] = -1.0  # the client's mistake: a schema 422, never a model failure
    refused = client.post("/v1/predict", json={"instances": invalid})
    assert refused.status_code == 422 and {item["rule"] for item in refused.json()["detail"]} != {"finite prediction"}

    assert stored_failures(server) == {("2", FINITE_PREDICTION): (int(mask.sum()), 1)}
    assert failed_rows_metric(client, "2", FINITE_PREDICTION) == mask.sum()
    assert failed_rows_metric(client, "1", FINITE_PREDICTION) is None  # the champion never failed: no series


def test_canary_scoring_that_raises_fails_the_challengers_rows_with_a_500(client, server):
    wait_ready(client, challenger_version="2", rollout="canary")  # runs after the canary test
    break_challenger(server.state, raising_output, "2")
    before = stored_failures(server)
    rows = make_districts(30, seed=12)
    mask = challenger_mask(rows)
    mixed = client.post("/v1/predict", json={"instances": records(rows)})
    assert mixed.status_code == 500, mixed.text
    assert set(mixed.json()) == {"detail", "error_id"}  # the app's 500: logged with the error, never echoed
    keyed = client.post("/v1/predict", json={"instances": records(rows.head(7))},
                        headers={"X-Routing-Key": challenger_key()})
    assert keyed.status_code == 500  # a key routing the whole request to the challenger: all 7 rows its
    after = stored_failures(server)
    assert after[("2", SCORING_ERROR)] == (int(mask.sum()) + 7, 2)
    assert after[("2", FINITE_PREDICTION)] == before[("2", FINITE_PREDICTION)]
    assert not any(version == "1" for version, _ in after)
    assert failed_rows_metric(client, "2", SCORING_ERROR) == mask.sum() + 7


def test_a_failing_shadow_challenger_is_charged_while_the_champion_answers(client, server, registry):
    set_rollout(registry, "test", mode="shadow", share=0.1)
    wait_ready(client, challenger_version="2", rollout="shadow")
    break_challenger(server.state, raising_output, "2")
    before = stored_failures(server)[("2", SCORING_ERROR)]
    rows = make_districts(25, seed=13)
    answer = client.post("/v1/predict", json={"instances": records(rows)})
    assert answer.status_code == 200 and answer.json()["model_version"] == "1"  # off the response path
    after = stored_failures(server)  # flush_captures: the shadow scores are computed with the capture
    assert after[("2", SCORING_ERROR)] == (before[0] + 25, before[1] + 1)
    assert not any(version == "1" for version, _ in after)
    captured = server.state.store.read_captures().set_index("request_id").loc[answer.json()["request_ids"]]
    assert captured["shadow_prediction"].isna().all() and (captured["shadow_model_version"] == "2").all()
