"""Hostile bodies never reach a 5xx, over real HTTP (uvicorn + httptools on loopback): lone surrogates,
integer literals beyond 64 bits, deep nesting and huge strings in predict and feedback fields are 4xx
naming the field and the rule, the error never echoes raw input that JSON cannot carry, and a 500
that still happens says ``Connection: close`` so the client's next request does not hit a reset.
"""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from housing_platform.core.schema import EXAMPLE_DISTRICT

pytestmark = pytest.mark.slow

ROW = dict(EXAMPLE_DISTRICT)
REQUEST_ID = "0123456789abcdef0123456789abcdef"
SURROGATE = '"\\ud800"'  # a lone high surrogate, escaped as any JSON encoder writes it
HUGE_INTEGER = "1" + "0" * 400  # beyond 64 bits and beyond float64
NESTED = "[" * 300 + "1" + "]" * 300


def _predict_body(field: str, literal: str) -> bytes:
    """``{"instances": [ROW with field = <literal, as raw JSON text>]}``."""
    row = json.dumps({**ROW, field: "__PLACEHOLDER__"})
    return ('{"instances": [' + row.replace('"__PLACEHOLDER__"', literal) + "]}").encode()


def _feedback_body(field: str, literal: str) -> bytes:
    item = json.dumps({"request_id": REQUEST_ID, "median_house_value": 123456.0, field: "__PLACEHOLDER__"})
    return item.replace('"__PLACEHOLDER__"', literal).encode()


def _post(client: httpx.Client, path: str, body: bytes) -> httpx.Response:
    return client.post(path, content=body, headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    ("field", "literal", "rule"),
    [
        ("ocean_proximity", SURROGATE, None),  # the category rule: one of [...]
        ("median_income", SURROGATE, "number"),
        ("total_rooms", HUGE_INTEGER, "finite"),
        ("total_rooms", "-" + HUGE_INTEGER, "finite"),
        ("ocean_proximity", NESTED, "string"),
        ("median_income", NESTED, "number"),
        ("ocean_proximity", json.dumps("x" * 100_000), None),
    ],
    ids=["surrogate-category", "surrogate-number", "huge-int", "huge-negative-int", "nested-category",
         "nested-number", "100k-string"],
)
def test_hostile_predict_fields_are_422_naming_field_and_rule(client, field, literal, rule):
    response = _post(client, "/v1/predict", _predict_body(field, literal))

    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["field"] == field and error["row"] == 0
    assert error["rule"] == rule if rule else error["rule"].startswith("one of")
    assert len(response.content) < 2_000  # the input is summarised or truncated, never echoed whole


def test_a_surrogate_in_a_nested_input_is_escaped_not_echoed_raw(client):
    response = _post(client, "/v1/predict", _predict_body("ocean_proximity", "[" + SURROGATE + "]"))

    assert response.status_code == 422, response.text
    shown = response.json()["detail"][0]["input"]
    assert "\ud800" not in json.dumps(shown, ensure_ascii=False, default=str).encode("utf-8", "surrogatepass").decode(
        "utf-8", "replace"
    )


@pytest.mark.parametrize(
    ("field", "literal", "rule"),
    [
        ("request_id", SURROGATE, "32 lowercase hex characters"),
        ("request_id", NESTED, "32 lowercase hex characters"),
        ("median_house_value", SURROGATE, None),
        ("median_house_value", HUGE_INTEGER, None),
        ("median_house_value", "-" + HUGE_INTEGER, None),
        ("median_house_value", NESTED, None),
    ],
    ids=["surrogate-id", "nested-id", "surrogate-value", "huge-int-value", "huge-negative-value", "nested-value"],
)
def test_hostile_feedback_fields_are_422_naming_the_field(client, field, literal, rule):
    response = _post(client, "/v1/feedback", _feedback_body(field, literal))

    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["field"] == field
    if rule:
        assert error["rule"] == rule


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 5_000 + b"]" * 5_000,  # deeper than either parser goes
        b'{"instances": [\xed\xa0\x80]}',  # a surrogate encoded as raw (invalid) UTF-8
        b'{"instances": "\xff\xfe"}',
        b"\xff\xfe{\x00}\x00",  # UTF-16: JSON over HTTP is UTF-8
        b"1" * 5_000,  # beyond Python's int-from-string limit
        b'{"instances": [' + b"1" * 5_000 + b"]}",
    ],
    ids=["deep", "raw-surrogate", "invalid-utf8", "utf16", "5000-digit-document", "5000-digit-field"],
)
@pytest.mark.parametrize("path", ["/v1/predict", "/v1/feedback"])
def test_unparseable_or_absurd_bodies_are_4xx(client, path, body):
    response = _post(client, path, body)

    assert 400 <= response.status_code < 500, response.text
    assert response.json()["detail"]


def test_an_internal_error_closes_the_connection_and_says_so(server, client):
    async def broken() -> None:
        raise RuntimeError("secret internal detail")

    server.app.add_api_route("/test-only/broken", broken, methods=["GET"], include_in_schema=False)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        raw.sendall(b"GET /test-only/broken HTTP/1.1\r\nhost: test\r\n\r\n")
        answer = b""
        while chunk := raw.recv(65536):  # the server closes after the response: recv returns b""
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500")
    assert b"connection: close" in head.lower()
    assert b"secret internal detail" not in body
    assert client.get("/health").status_code == 200  # the server itself is fine
