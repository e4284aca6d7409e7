"""Token authentication on a real server on loopback: scopes (401/403), feedback rate limits (429), labels held
to the target's schema range (422, nothing stored), revocation without restart, the OpenAPI description, and a
server without tokens working as before."""

from __future__ import annotations

import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine
from starlette.requests import Request

from housing_platform.adapters.capture.store import CaptureStore
from housing_platform.adapters.token_store import SCOPE_ADMIN, SCOPE_FEEDBACK, SCOPE_PREDICT, TokenStore
from housing_platform.core.schema import EXAMPLE_DISTRICT, MAX_HOUSE_VALUE, MIN_HOUSE_VALUE, TARGET_COLUMN
from housing_platform.devtools.capture_samples import make_records
from housing_platform.devtools.processes import NotReady, wait_until
from housing_platform.server.auth import TokenAuth, is_loopback
from housing_platform.server.metrics import ServingMetrics
from housing_platform.server.server_config import ServingConfig
from housing_platform_tests.server.conftest import ThreadServer

ROW = dict(EXAMPLE_DISTRICT)
LIMITED_PER_MINUTE = 3
CHECK_INTERVAL_SECONDS = 0.1


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    store = TokenStore(tmp_path_factory.mktemp("server") / "tokens.json")
    made = {
        "full": store.create([SCOPE_PREDICT, SCOPE_FEEDBACK], name="full"),
        "predict": store.create([SCOPE_PREDICT], name="predict-only"),
        "admin": store.create([SCOPE_ADMIN], name="scraper"),
        "limited": store.create([SCOPE_PREDICT, SCOPE_FEEDBACK], name="slow", feedback_rate_per_minute=LIMITED_PER_MINUTE),
        "doomed": store.create([SCOPE_PREDICT], name="to-revoke"),
    }
    return store, {name: token for name, (token, _) in made.items()}, {name: rec for name, (_, rec) in made.items()}


@pytest.fixture(scope="module")
def secured(models, tokens, tmp_path_factory):
    store, _, _ = tokens
    capture_url = f"sqlite:///{tmp_path_factory.mktemp('capture') / 'capture.db'}"
    with ThreadServer(models, capture_url, poll_interval_seconds=0.2, tokens_file=str(store.path),
                      tokens_check_interval_seconds=CHECK_INTERVAL_SECONDS) as running:
        with httpx.Client(base_url=running.url, timeout=30) as http:
            yield running, http


def predict_ids(http: httpx.Client, token: str, n: int) -> list[str]:
    response = http.post("/v1/predict", json={"instances": [ROW] * n}, headers=bearer(token))
    assert response.status_code == 200, response.text
    return response.json()["request_ids"]


def refusals(http: httpx.Client, admin: str) -> dict[tuple[str, str], float]:
    response = http.get("/metrics", headers=bearer(admin))
    assert response.status_code == 200
    (family,) = [f for f in text_string_to_metric_families(response.text) if f.name == "housing_auth_refusals"]
    return {(s.labels["route"], s.labels["reason"]): s.value for s in family.samples if s.name.endswith("_total")}


@pytest.mark.parametrize(("path", "scope"), [("/v1/predict", "predict"), ("/v1/feedback", "feedback"),
                                             ("/metrics", "admin")])
def test_no_token_is_401_with_a_bearer_challenge_naming_the_scope(secured, tokens, path, scope):
    _, http = secured
    before = refusals(http, tokens[1]["admin"])
    response = http.request("GET" if path == "/metrics" else "POST", path, json={"instances": [ROW]})

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["required_scope"] == scope and f"--scope {scope}" in response.json()["detail"]
    assert refusals(http, tokens[1]["admin"])[(path, "missing_token")] == before[(path, "missing_token")] + 1


def test_unknown_revoked_shaped_or_non_bearer_tokens_are_401(secured, tokens):
    _, http = secured
    good = tokens[1]["full"]
    for header in (f"Bearer {good[:-2]}xx", f"Basic {good}", "Bearer", f"Bearer hp_00000000_{good[12:]}"):
        response = http.post("/v1/predict", json={"instances": [ROW]}, headers={"authorization": header})
        assert response.status_code == 401, header
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert http.post("/v1/predict", json={"instances": [ROW]}, headers={"authorization": f"bearer {good}"}).is_success


def test_a_predict_token_cannot_post_feedback_403_naming_the_missing_scope(secured, tokens):
    running, http = secured
    _, secret, record = tokens
    ids = predict_ids(http, secret["predict"], 1)
    stored = running.state.store.count_feedback()

    response = http.post("/v1/feedback", json={"request_id": ids[0], TARGET_COLUMN: 200_000.0},
                         headers=bearer(secret["predict"]))

    assert response.status_code == 403
    assert "'feedback'" in response.json()["detail"] and response.json()["token_id"] == record["predict"].id
    assert 'error="insufficient_scope", scope="feedback"' in response.headers["www-authenticate"]
    assert running.state.store.count_feedback() == stored
    assert http.get("/metrics", headers=bearer(secret["predict"])).status_code == 403  # admin only


def test_a_feedback_token_records_labels_and_open_routes_need_none(secured, tokens):
    running, http = secured
    ids = predict_ids(http, tokens[1]["full"], 2)

    response = http.post("/v1/feedback", json=[{"request_id": i, TARGET_COLUMN: 250_000.0} for i in ids],
                         headers=bearer(tokens[1]["full"]))

    assert response.status_code == 200 and response.json()["recorded"] == 2
    stored = running.state.store.read_captures(with_feedback=True).set_index("request_id")
    assert list(stored.loc[ids, "feedback_token"]) == [tokens[2]["full"].id] * 2  # the id, for per-token checks
    for path in ("/health", "/ready", "/docs", "/openapi.json"):
        assert http.get(path).status_code == 200, path


def test_feedback_beyond_the_token_rate_is_429_with_retry_after_and_not_stored(secured, tokens):
    running, http = secured
    _, secret, record = tokens
    ids = predict_ids(http, secret["limited"], LIMITED_PER_MINUTE + 2)
    items = [{"request_id": i, TARGET_COLUMN: 300_000.0} for i in ids]
    too_big = http.post("/v1/feedback", json=items[: LIMITED_PER_MINUTE + 1], headers=bearer(secret["limited"]))
    assert too_big.status_code == 413 and f"at most {LIMITED_PER_MINUTE}" in too_big.json()["detail"]

    first = http.post("/v1/feedback", json=items[:2], headers=bearer(secret["limited"]))
    second = http.post("/v1/feedback", json=items[2], headers=bearer(secret["limited"]))
    stored = running.state.store.count_feedback()
    over = http.post("/v1/feedback", json=items[3], headers=bearer(secret["limited"]))

    assert (first.status_code, second.status_code) == (200, 200)
    assert over.status_code == 429
    retry_after = int(over.headers["retry-after"])
    # The window is 60 s and the first labels were sent a moment ago: between 1 and 60 s to wait.
    assert 1 <= retry_after <= 60 and over.json()["retry_after_seconds"] == retry_after
    assert over.json()["token_id"] == record["limited"].id
    assert running.state.store.count_feedback() == stored
    # The limit is per token: another token with the feedback scope is not held back.
    other = http.post("/v1/feedback", json=items[4], headers=bearer(secret["full"]))
    assert other.status_code == 200


@pytest.mark.parametrize(("value", "rule"), [(1e300, f"<= {MAX_HOUSE_VALUE:g}"), (0.01, f">= {MIN_HOUSE_VALUE:g}"),
                                             ("abc", "number")])
def test_a_label_outside_the_target_schema_range_is_422_and_nothing_is_stored(secured, tokens, value, rule):
    running, http = secured
    ids = predict_ids(http, tokens[1]["full"], 2)
    stored = running.state.store.count_feedback()

    response = http.post("/v1/feedback", json=[{"request_id": ids[0], TARGET_COLUMN: 250_000.0},
                                                {"request_id": ids[1], TARGET_COLUMN: value}],
                         headers=bearer(tokens[1]["full"]))

    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert (error["field"], error["rule"], error["row"]) == (TARGET_COLUMN, rule, 1)
    assert running.state.store.count_feedback() == stored  # all or nothing: the valid label is not kept either


def test_a_revoked_token_is_refused_without_a_restart(secured, tokens):
    _, http = secured
    store, secret, record = tokens
    assert predict_ids(http, secret["doomed"], 1)
    store.revoke(record["doomed"].id)

    def refused() -> None:
        status = http.post("/v1/predict", json={"instances": [ROW]}, headers=bearer(secret["doomed"])).status_code
        if status != 401:
            raise NotReady(f"still {status}")

    wait_until(refused, what="the revocation to take effect", timeout_seconds=50 * CHECK_INTERVAL_SECONDS)


def test_openapi_documents_the_bearer_scheme_and_refusals(secured):
    spec = secured[1].get("/openapi.json").json()

    assert spec["components"]["securitySchemes"]["HTTPBearer"] == {**spec["components"]["securitySchemes"]["HTTPBearer"],
                                                                   "type": "http", "scheme": "bearer"}
    for path, method in (("/v1/predict", "post"), ("/v1/feedback", "post"), ("/metrics", "get")):
        operation = spec["paths"][path][method]
        assert operation["security"] == [{"HTTPBearer": []}]
        assert {"401", "403"} <= set(operation["responses"])
    assert "429" in spec["paths"]["/v1/feedback"]["post"]["responses"]
    assert "security" not in spec["paths"]["/health"]["get"] and "security" not in spec["paths"]["/ready"]["get"]
    value = spec["paths"]["/v1/feedback"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert f"{MAX_HOUSE_VALUE:g}" in str(value) and f"{MIN_HOUSE_VALUE:g}" in str(value)


def test_without_tokens_on_loopback_every_route_is_open_until_a_token_is_created(models, tmp_path):
    store = TokenStore(tmp_path / "server" / "tokens.json")  # absent: a fresh state folder, as `make demo` has
    with ThreadServer(models, f"sqlite:///{tmp_path / 'capture.db'}", tokens_file=str(store.path),
                      tokens_check_interval_seconds=CHECK_INTERVAL_SECONDS) as running:
        with httpx.Client(base_url=running.url, timeout=30) as http:
            ids = http.post("/v1/predict", json={"instances": [ROW]}).json()["request_ids"]
            assert http.post("/v1/feedback", json={"request_id": ids[0], TARGET_COLUMN: 150_000.0}).status_code == 200
            assert running.state.store.read_captures(with_feedback=True)["feedback_token"].isna().all()
            assert http.get("/metrics").status_code == 200

            store.create([SCOPE_PREDICT])  # the first token switches authentication on, without a restart

            def closed() -> None:
                status = http.post("/v1/predict", json={"instances": [ROW]}).status_code
                if status != 401:
                    raise NotReady(f"still {status}")

            wait_until(closed, what="authentication to switch on", timeout_seconds=50 * CHECK_INTERVAL_SECONDS)


def _request(headers: dict[str, str]) -> Request:
    raw = [(k.encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "POST", "path": "/v1/predict", "headers": raw, "query_string": b""})


def _auth(tmp_path, **overrides) -> TokenAuth:
    config = ServingConfig(tracking_uri="sqlite:///x.db", artifact_root="file:///x", capture_url="sqlite:///c.db",
                           tokens_file=str(tmp_path / "tokens.json"), **overrides)
    return TokenAuth(config, ServingMetrics(("/v1/predict",)), {"/v1/predict": SCOPE_PREDICT})


def test_the_token_id_is_on_the_request_state_and_required_tokens_fail_closed(tmp_path):
    open_auth = _auth(tmp_path)
    anonymous = _request({})
    assert open_auth.refuse(anonymous, "/v1/predict") is None and anonymous.state.token_id is None

    required = _auth(tmp_path, require_tokens=True)  # a non-loopback server whose tokens file went missing
    assert required.refuse(_request({}), "/v1/predict").status_code == 401

    token, record = TokenStore(tmp_path / "tokens.json").create([SCOPE_PREDICT])
    request = _request(bearer(token))
    assert _auth(tmp_path).refuse(request, "/v1/predict") is None
    assert request.state.token_id == record.id and token not in repr(vars(request.state))


def test_a_tokens_file_broken_while_serving_keeps_the_last_good_tokens(tmp_path, caplog):
    store = TokenStore(tmp_path / "tokens.json")
    token, record = store.create([SCOPE_PREDICT])
    auth = _auth(tmp_path, tokens_check_interval_seconds=0.01)
    store.path.write_text("{half a file")  # a hand edit gone wrong (the CLI's writes are atomic)
    time.sleep(0.02)

    request = _request(bearer(token))
    assert auth.refuse(request, "/v1/predict") is None and request.state.token_id == record.id
    assert "keeping the 1 tokens read before" in caplog.text and "tokens.json" in caplog.text


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("::1", True), ("[::1]", True),
                                                ("localhost", True), ("127.0.0.2", True), ("0.0.0.0", False),
                                                ("::", False), ("10.0.0.5", False), ("example.org", False)])
def test_loopback_hosts(host, loopback):
    assert is_loopback(host) is loopback


def test_a_capture_store_made_before_feedback_tokens_gets_the_column_and_keeps_its_labels(tmp_path):
    url = f"sqlite:///{tmp_path / 'capture.db'}"
    old = CaptureStore(url)
    records = make_records(2)
    old.insert_captures(records)
    old.record_feedback([(records[0].request_id, 200_000.0)])
    old.engine.dispose()
    with create_engine(url).begin() as conn:  # the store as it was before this column existed
        conn.exec_driver_sql("ALTER TABLE feedback DROP COLUMN feedback_token")

    store = CaptureStore(url)
    store.record_feedback([(records[1].request_id, 300_000.0)], token_id="0badc0de")

    frame = store.read_captures(with_feedback=True).set_index("request_id")
    assert frame.loc[records[0].request_id, "feedback_token"] is None
    assert frame.loc[records[1].request_id, "feedback_token"] == "0badc0de"
    assert list(frame[TARGET_COLUMN]) == [200_000.0, 300_000.0]


def test_simulate_sends_its_token_and_without_one_every_request_is_refused(secured, tokens, monkeypatch, capsys):
    """`housing-platform simulate` against a server holding tokens: with --token (or HOUSING_API_TOKEN) every
    predict and feedback request succeeds and the labels carry the token's id; without one, all fail with 401."""
    from housing_platform.cli.main import EXIT_OK, EXIT_REQUESTS_FAILED, main
    from housing_platform.config.settings import DEFAULT_DATA_PATH

    running, _ = secured
    _, secret, record = tokens
    argv = ["simulate", "--url", running.url, "--rows", "20", "--batch-size", "10", "--feedback",
            "--data", str(DEFAULT_DATA_PATH)]
    before = running.state.store.count_feedback()

    assert main(argv) == EXIT_REQUESTS_FAILED
    assert "401" in capsys.readouterr().err
    assert running.state.store.count_feedback() == before

    monkeypatch.setenv("HOUSING_API_TOKEN", secret["full"])
    assert main(argv) == EXIT_OK
    assert running.state.store.count_feedback() == before + 20
    labelled = running.state.store.read_captures(with_feedback=True)
    assert (labelled["feedback_token"] == record["full"].id).sum() >= 20
