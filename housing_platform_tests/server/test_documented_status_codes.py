"""Every status code the OpenAPI document lists is one a client can really get: the document is read from
a real server's ``/openapi.json``, each documented (path, method, status) has a scripted request below that
must produce exactly that status, and the documented set must equal the scripted set — a code documented
later without a scenario here fails, as does a scenario for a code the document dropped.

Two servers on loopback, both with API tokens: a healthy one (``max_rows_per_request`` lowered so a 413 is
a small request), and one that cannot serve (no version behind its alias, the fallback off, its capture
store's folder blocked by a file) for the 503s.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import httpx
import pytest

from housing_platform.adapters.token_store import SCOPE_ADMIN, SCOPE_FEEDBACK, SCOPE_PREDICT, TokenStore
from housing_platform.core.schema import EXAMPLE_DISTRICT, TARGET_COLUMN
from housing_platform.devtools.processes import NotReady, wait_until
from housing_platform_tests.server.conftest import ThreadServer

MAX_ROWS = 20
ROW = dict(EXAMPLE_DISTRICT)
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    store = TokenStore(tmp_path_factory.mktemp("status-codes") / "tokens.json")
    made = {
        "full": store.create([SCOPE_PREDICT, SCOPE_FEEDBACK], name="full"),
        "predict": store.create([SCOPE_PREDICT], name="predict-only"),
        "admin": store.create([SCOPE_ADMIN], name="scraper"),
        "limited": store.create([SCOPE_PREDICT, SCOPE_FEEDBACK], name="one-label", feedback_rate_per_minute=1),
    }
    return store.path, {name: token for name, (token, _) in made.items()}


@pytest.fixture(scope="module")
def healthy(models, tokens, tmp_path_factory):
    path, _ = tokens
    capture_url = f"sqlite:///{tmp_path_factory.mktemp('capture') / 'capture.db'}"
    with ThreadServer(models, capture_url, poll_interval_seconds=0, tokens_file=str(path),
                      max_rows_per_request=MAX_ROWS) as running, httpx.Client(base_url=running.url, timeout=30) as http:
        yield http


@pytest.fixture(scope="module")
def broken(models, tokens, tmp_path_factory):
    """No loadable version, no fallback, an unreachable capture store: /ready, predict and feedback answer 503."""
    path, _ = tokens
    blocked = tmp_path_factory.mktemp("broken") / "not-a-folder"
    blocked.write_text("a file where the capture database's folder should be")
    unregistered = SimpleNamespace(model_name="no_such_model", tracking_uri=models.tracking_uri,
                                   artifact_root=models.artifact_root)
    server = ThreadServer(unregistered, f"sqlite:///{blocked / 'capture.db'}", poll_interval_seconds=0,
                          tokens_file=str(path), fallback_on_no_model=False)
    server.thread.start()  # not `with`: that waits for /ready to answer 200, which this one never will

    def refused_a_load() -> None:
        try:
            detail = httpx.get(f"{server.url}/ready", timeout=5).json()["detail"]
        except httpx.TransportError as error:
            raise NotReady(repr(error)) from None
        if detail.endswith("(loading)"):
            raise NotReady(detail)

    wait_until(refused_a_load, what="the broken server refusing its load", timeout_seconds=30, interval_seconds=0.1)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http
    server.__exit__(None, None, None)


def bearer(token: str, content_type: str | None = "application/json") -> dict[str, str]:
    headers = {"authorization": f"Bearer {token}"}
    return headers | ({"content-type": content_type} if content_type else {})


def scenarios(healthy: httpx.Client, broken: httpx.Client, token: dict[str, str]) -> dict[tuple, Callable]:
    """(path, method, status) -> a request that must produce that status."""
    full, predict_only, admin, limited = token["full"], token["predict"], token["admin"], token["limited"]
    predict_body = {"instances": [ROW]}

    def predict_ids(n: int = 1) -> list[str]:
        response = healthy.post("/v1/predict", json={"instances": [ROW] * n}, headers=bearer(full))
        assert response.status_code == 200, response.text
        return response.json()["request_ids"]

    def label(request_id: str) -> dict:
        return {"request_id": request_id, TARGET_COLUMN: 250_000.0}

    def twice(request_id: str) -> httpx.Response:
        assert healthy.post("/v1/feedback", json=label(request_id), headers=bearer(full)).status_code == 200
        return healthy.post("/v1/feedback", json=label(request_id), headers=bearer(full))

    def rate_limited() -> httpx.Response:
        ids = predict_ids(2)
        assert healthy.post("/v1/feedback", json=label(ids[0]), headers=bearer(limited)).status_code == 200
        return healthy.post("/v1/feedback", json=label(ids[1]), headers=bearer(limited))

    p, f = "/v1/predict", "/v1/feedback"
    return {
        (p, "post", "200"): lambda: healthy.post(p, json=predict_body, headers=bearer(full)),
        (p, "post", "400"): lambda: healthy.post(p, content=b"", headers=bearer(full)),
        (p, "post", "401"): lambda: healthy.post(p, json=predict_body, headers=JSON),
        (p, "post", "403"): lambda: healthy.post(p, json=predict_body, headers=bearer(admin)),
        (p, "post", "413"): lambda: healthy.post(p, json={"instances": [ROW] * (MAX_ROWS + 1)}, headers=bearer(full)),
        (p, "post", "415"): lambda: healthy.post(p, content=b"{}", headers=bearer(full, "text/plain")),
        (p, "post", "422"): lambda: healthy.post(p, json={"instances": [ROW | {"median_income": "a lot"}]},
                                                 headers=bearer(full)),
        (p, "post", "503"): lambda: broken.post(p, json=predict_body, headers=bearer(full)),
        (f, "post", "200"): lambda: healthy.post(f, json=label(predict_ids()[0]), headers=bearer(full)),
        (f, "post", "400"): lambda: healthy.post(f, content=b"", headers=bearer(full)),
        (f, "post", "401"): lambda: healthy.post(f, json=label("0" * 32), headers=JSON),
        (f, "post", "403"): lambda: healthy.post(f, json=label("0" * 32), headers=bearer(predict_only)),
        (f, "post", "404"): lambda: healthy.post(f, json=label("0" * 32), headers=bearer(full)),
        (f, "post", "409"): lambda: twice(predict_ids()[0]),
        (f, "post", "413"): lambda: healthy.post(f, json=[label("0" * 32)] * (MAX_ROWS + 1), headers=bearer(full)),
        (f, "post", "415"): lambda: healthy.post(f, content=b"{}", headers=bearer(full, "application/x-www-form-urlencoded")),
        (f, "post", "422"): lambda: healthy.post(f, json={"request_id": "0" * 32, TARGET_COLUMN: "abc"},
                                                 headers=bearer(full)),
        (f, "post", "429"): rate_limited,
        (f, "post", "503"): lambda: broken.post(f, json=label("0" * 32), headers=bearer(full)),
        ("/health", "get", "200"): lambda: healthy.get("/health"),
        ("/ready", "get", "200"): lambda: healthy.get("/ready"),
        ("/ready", "get", "503"): lambda: broken.get("/ready"),
        ("/metrics", "get", "200"): lambda: healthy.get("/metrics", headers=bearer(admin, None)),
        ("/metrics", "get", "401"): lambda: healthy.get("/metrics"),
        ("/metrics", "get", "403"): lambda: healthy.get("/metrics", headers=bearer(predict_only, None)),
    }


def documented_statuses(document: dict) -> set[tuple[str, str, str]]:
    return {
        (path, method, status)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        for status in operation.get("responses", {})
    }


def test_every_documented_status_code_is_produced_by_a_scripted_request(healthy, broken, tokens):
    _, token = tokens
    documented = documented_statuses(healthy.get("/openapi.json").json())
    scripted = scenarios(healthy, broken, token)
    assert documented == set(scripted), (
        f"documented without a scenario: {sorted(documented - set(scripted))}; "
        f"scripted but not documented: {sorted(set(scripted) - documented)}"
    )
    produced = {key: str(request().status_code) for key, request in scripted.items()}
    wrong = {key: status for key, status in produced.items() if status != key[2]}
    assert not wrong, f"(path, method, documented status) -> status produced: {wrong}"


def test_the_broken_server_is_really_unable_to_serve(broken):
    """The 503 scenarios' premise: the broken server has no model (not merely loading one)."""
    ready = broken.get("/ready").json()
    assert ready["serving_version"] is None and "no_such_model" in ready["detail"]

