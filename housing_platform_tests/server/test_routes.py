"""The model server's routes over real HTTP: predictions and their capture, input validation (422s
naming row, field and rule), feedback, operations endpoints and metrics, and errors of our own.
"""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from housing_platform.adapters.capture.store import CaptureStore
from housing_platform.core.schema import EXAMPLE_DISTRICT, FEATURE_COLUMNS, TARGET_COLUMN
from housing_platform.devtools.tiny_models import records

pytestmark = pytest.mark.slow

ROW = dict(EXAMPLE_DISTRICT)


def flushed_store(server) -> CaptureStore:
    assert server.state.flush_captures(10)
    return server.state.store


# -- predict -----------------------------------------------------------------------------------


def test_predict_returns_one_prediction_and_request_id_per_row_from_the_champion(client, models):
    rows = records(models.test.head(25))

    response = client.post("/v1/predict", json={"instances": rows})

    assert response.status_code == 200, response.text
    body = response.json()
    version = body["model_version"]
    assert version == models.registry().champion().version
    assert len(body["predictions"]) == len(body["request_ids"]) == 25
    assert len(set(body["request_ids"])) == 25 and all(len(i) == 32 for i in body["request_ids"])
    expected = models.scorer(version).score(models.test.head(25))
    np.testing.assert_allclose(body["predictions"], expected, rtol=1e-9)


def test_scored_rows_are_captured_with_inputs_prediction_version_and_latency(client, server):
    response = client.post("/v1/predict", json={"instances": [ROW, {**ROW, "total_bedrooms": None}]})
    assert response.status_code == 200
    body = response.json()

    captures = flushed_store(server).read_captures().set_index("request_id").loc[body["request_ids"]]

    assert list(captures["prediction"]) == pytest.approx(body["predictions"], rel=1e-12)
    assert (captures["model_version"] == body["model_version"]).all()
    assert captures["total_rooms"].iloc[0] == ROW["total_rooms"] and captures["ocean_proximity"].iloc[0] == "NEAR BAY"
    assert math.isnan(captures["total_bedrooms"].iloc[1])  # stored as NULL, not a number
    assert (captures["latency_ms"] > 0).all() and (captures["out_of_range"] == "").all()


def test_values_outside_the_training_range_are_accepted_and_flagged(client, server, models):
    beyond = models.train["total_rooms"].max() * 3
    response = client.post("/v1/predict", json={"instances": [{**ROW, "total_rooms": beyond, "population": 40_000.0}]})

    assert response.status_code == 200, response.text
    request_id = response.json()["request_ids"][0]
    flags = flushed_store(server).read_captures().set_index("request_id").loc[request_id, "out_of_range"]
    assert {"total_rooms", "population"} <= set(flags.split(","))


def test_the_largest_allowed_request_is_scored(client):
    response = client.post("/v1/predict", json={"instances": [ROW] * 10_000})

    assert response.status_code == 200
    assert len(response.json()["predictions"]) == 10_000


def test_more_than_ten_thousand_rows_is_413(client):
    response = client.post("/v1/predict", json={"instances": [ROW] * 10_001})

    assert response.status_code == 413
    assert "at most 10,000" in response.json()["detail"]


# -- 422: every rule, named -----------------------------------------------------------------------

INVALID_ROWS = {
    "missing field": ({k: v for k, v in ROW.items() if k != "latitude"}, "latitude", "required"),
    "string for a number": ({**ROW, "population": "322"}, "population", "number"),
    "boolean for a number": ({**ROW, "median_income": True}, "median_income", "number"),
    "null where not nullable": ({**ROW, "households": None}, "households", "not null"),
    "negative count": ({**ROW, "total_rooms": -880.0}, "total_rooms", "> 0"),
    "zero count": ({**ROW, "population": 0}, "population", "> 0"),
    "latitude above California": ({**ROW, "latitude": 45.0}, "latitude", "<= 42.1"),
    "longitude below California": ({**ROW, "longitude": -130.0}, "longitude", ">= -124.5"),
    "age above 100": ({**ROW, "housing_median_age": 101}, "housing_median_age", "<= 100"),
    "income at the exclusive bound": ({**ROW, "median_income": 16.0}, "median_income", "< 16"),
    "unknown category": ({**ROW, "ocean_proximity": "MARS"}, "ocean_proximity", "one of"),
    "number for the category": ({**ROW, "ocean_proximity": 3}, "ocean_proximity", "string"),
    "bedrooms above rooms": ({**ROW, "total_bedrooms": 900.0}, "total_bedrooms, total_rooms",
                             "total_bedrooms <= total_rooms"),
    "households above population": ({**ROW, "households": 400.0}, "households, population",
                                    "households <= population"),
}


@pytest.mark.parametrize("case", list(INVALID_ROWS))
def test_invalid_input_is_422_naming_row_field_and_rule(client, case):
    row, field, rule = INVALID_ROWS[case]

    response = client.post("/v1/predict", json={"instances": [ROW, row]})

    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert any(e["row"] == 1 and e["field"] == field and e["rule"].startswith(rule) for e in errors), errors
    assert all(e["row"] == 1 for e in errors)  # the valid row is not blamed
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    ("literal", "field"),
    [(b"NaN", "total_rooms"), (b"Infinity", "total_rooms"), (b"-Infinity", "total_rooms"), (b"1e400", "total_rooms"),
     (b"NaN", "total_bedrooms")],
)
def test_nan_and_infinity_literals_are_422_finite(client, literal, field):
    body = json.dumps({"instances": [{**ROW, field: "__X__"}]}).replace('"__X__"', literal.decode())

    response = client.post("/v1/predict", content=body.encode(), headers={"content-type": "application/json"})

    assert response.status_code == 422, response.text
    error = response.json()["detail"][0]
    assert (error["field"], error["rule"]) == (field, "finite")


@pytest.mark.parametrize(
    ("body", "status", "text"),
    [
        (b'{"instances": [', 400, "not valid JSON"),
        (b"", 400, "empty"),
        (b"[1, 2]", 422, "instances"),
        (b'{"instances": []}', 422, "at least one row"),
        (b'{"instances": {"a": 1}}', 422, "list of objects"),
        (b'{"instances": [1]}', 422, "must be an object"),
    ],
)
def test_malformed_bodies_get_a_clear_4xx(client, body, status, text):
    response = client.post("/v1/predict", content=body, headers={"content-type": "application/json"})

    assert response.status_code == status
    assert text in response.text
    assert "Traceback" not in response.text


def test_a_nullable_field_may_be_null_or_absent(client):
    without = {k: v for k, v in ROW.items() if k != "total_bedrooms"}
    response = client.post("/v1/predict", json={"instances": [{**ROW, "total_bedrooms": None}, without]})

    assert response.status_code == 200, response.text
    first, second = response.json()["predictions"]
    assert first == pytest.approx(second)


# -- feedback ----------------------------------------------------------------------------------


def test_feedback_right_after_a_prediction_is_recorded_once(client, server):
    ids = client.post("/v1/predict", json={"instances": [ROW, ROW, ROW]}).json()["request_ids"]

    single = client.post("/v1/feedback", json={"request_id": ids[0], TARGET_COLUMN: 452_600.0})
    several = client.post("/v1/feedback", json=[{"request_id": i, TARGET_COLUMN: 400_000} for i in ids[1:]])
    again = client.post("/v1/feedback", json={"request_id": ids[0], TARGET_COLUMN: 123_456.0})

    assert single.status_code == 200 and single.json()["recorded"] == 1
    assert several.status_code == 200 and several.json()["recorded"] == 2
    assert again.status_code == 409 and ids[0] in again.json()["request_ids"]
    joined = server.state.store.read_captures(with_feedback=True).set_index("request_id").loc[ids]
    assert list(joined[TARGET_COLUMN]) == [452_600.0, 400_000.0, 400_000.0]


def test_feedback_for_an_unknown_request_id_is_404(client):
    response = client.post("/v1/feedback", json={"request_id": "0" * 32, TARGET_COLUMN: 100_000.0})

    assert response.status_code == 404
    assert response.json()["request_ids"] == ["0" * 32]


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"request_id": "not-an-id", TARGET_COLUMN: 1.0}, "request_id"),
        ({"request_id": 12, TARGET_COLUMN: 1.0}, "request_id"),
        ({TARGET_COLUMN: 1.0}, "request_id"),
        ({"request_id": "a" * 32, TARGET_COLUMN: "lots"}, TARGET_COLUMN),
        ({"request_id": "a" * 32, TARGET_COLUMN: -5}, TARGET_COLUMN),
        ({"request_id": "a" * 32}, TARGET_COLUMN),
    ],
)
def test_malformed_feedback_is_422_naming_the_field(client, item, field):
    response = client.post("/v1/feedback", json=item)

    assert response.status_code == 422
    assert field in {e["field"] for e in response.json()["detail"]}


# -- operations --------------------------------------------------------------------------------


def test_health_ready_docs(client, models):
    assert client.get("/health").json() == {"detail": "alive"}
    ready = client.get("/ready").json()
    assert ready["model_version"] == models.registry().champion().version
    assert ready["follows"] == "models:/housing_price_model@champion"
    spec = client.get("/openapi.json").json()
    instance = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    district = instance["properties"]["instances"]["items"]
    assert district["properties"]["median_income"]["exclusiveMaximum"] == 16.0  # from the pandera model
    assert set(district["properties"]) == set(FEATURE_COLUMNS)
    assert client.get("/docs").status_code == 200


def test_metrics_count_requests_rows_model_and_capture(client, server):
    client.post("/v1/predict", json={"instances": [ROW] * 4})
    client.post("/v1/predict", json={"instances": [{**ROW, "total_rooms": -1}]})
    server.state.flush_captures(10)

    text = client.get("/metrics").text

    def value(sample: str) -> float:
        line = next(line for line in text.splitlines() if line.startswith(sample + " "))
        return float(line.rsplit(" ", 1)[1])

    assert value('housing_http_requests_total{method="POST",route="/v1/predict",status="200"}') >= 2
    assert value('housing_http_requests_total{method="POST",route="/v1/predict",status="422"}') >= 1
    assert value('housing_http_request_duration_seconds_count{route="/v1/predict"}') >= 3
    assert value("housing_rows_scored_total") >= 4
    assert value("housing_capture_written_total") >= 4
    assert value("housing_capture_dropped_total") == 0
    assert value("housing_capture_queue_depth") >= 0
    assert 'housing_model_info{model_uri="models:/housing_price_model/' in text


# -- failures of our own: a 500 without internals, and a server without a model ----------------


class _BrokenScorer:
    """Stands in for a FastScorer whose scoring hits a bug."""

    def category_codes(self, values):
        return np.zeros(len(values), dtype=np.intp)

    def score_arrays(self, numeric, codes):
        raise RuntimeError("secret internal detail")


class _Registry:
    def __init__(self, alias_version: str | None):
        self.alias_version = alias_version

    def version_by_alias(self, alias):
        from types import SimpleNamespace

        return None if self.alias_version is None else SimpleNamespace(version=self.alias_version)

    def get_version(self, version):
        from types import SimpleNamespace

        return SimpleNamespace(run_id="run")


def _test_client(tmp_path, registry: _Registry, loader):
    from fastapi.testclient import TestClient

    from housing_platform.server.app import create_app
    from housing_platform.server.server_config import ServingConfig

    config = ServingConfig(tracking_uri="unused", artifact_root="unused",
                           capture_url=f"sqlite:///{tmp_path / 'capture.db'}", load_retry_seconds=0.05)
    return TestClient(create_app(config, registry_factory=lambda: registry, loader=loader),
                      raise_server_exceptions=False)


def test_a_bug_while_scoring_is_a_500_without_a_stack_trace(tmp_path):
    with _test_client(tmp_path, _Registry("3"), lambda uri: _BrokenScorer()) as client:
        wait = time.monotonic() + 10
        while client.get("/ready").status_code != 200 and time.monotonic() < wait:
            time.sleep(0.02)

        response = client.post("/v1/predict", json={"instances": [ROW]})

    assert response.status_code == 500
    assert set(response.json()) == {"detail", "error_id"}
    assert "secret internal detail" not in response.text and "Traceback" not in response.text


def test_without_a_champion_the_server_is_alive_but_not_ready(tmp_path):
    with _test_client(tmp_path, _Registry(None), lambda uri: _BrokenScorer()) as client:
        time.sleep(0.2)
        assert client.get("/health").status_code == 200
        ready = client.get("/ready")
        predict = client.post("/v1/predict", json={"instances": [ROW]})

    assert ready.status_code == 503 and "alias 'champion'" in ready.json()["detail"]
    assert predict.status_code == 503


def test_predict_returns_the_versions_prediction_interval_per_row(client, models):
    rows = records(models.test.head(25))

    body = client.post("/v1/predict", json={"instances": rows}).json()

    predictions, lower, upper = (np.asarray(body[k]) for k in ("predictions", "lower", "upper"))
    assert lower.shape == upper.shape == predictions.shape == (25,)
    assert (lower <= predictions).all() and (predictions <= upper).all() and (upper > lower).all()
    expected = models.scorer(body["model_version"]).interval_bounds(predictions)
    np.testing.assert_array_equal(lower, expected[0])  # the same computation on the same float64 prediction
    np.testing.assert_array_equal(upper, expected[1])
