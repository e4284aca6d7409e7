"""The POST routes read JSON only: any other Content-Type is a 415 before the body is read, so a web
page's cross-site "simple" POST (text/plain, form, multipart: no CORS preflight) cannot write into
the capture store. Over real HTTP on loopback.
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from housing_platform.core.schema import EXAMPLE_DISTRICT

pytestmark = pytest.mark.slow

BODY = json.dumps({"instances": [dict(EXAMPLE_DISTRICT)]}).encode()
FEEDBACK = json.dumps({"request_id": "0123456789abcdef0123456789abcdef", "median_house_value": 100000.0}).encode()


def _captured_rows(server) -> int:
    assert server.state.flush_captures(10)
    return len(server.state.store.read_captures())


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=----x",
        "application/json; charset=latin-1",
        "application/jsonx",
        None,
    ],
)
def test_a_body_that_is_not_declared_json_is_415_and_nothing_is_captured(server, client, content_type):
    before = _captured_rows(server)
    headers = {} if content_type is None else {"content-type": content_type}

    predict = client.post("/v1/predict", content=BODY, headers=headers)
    feedback = client.post("/v1/feedback", content=FEEDBACK, headers=headers)

    assert predict.status_code == 415, predict.text
    assert feedback.status_code == 415, feedback.text
    assert "application/json" in predict.json()["detail"]
    assert _captured_rows(server) == before


def test_a_multipart_form_is_415(server, client):
    before = _captured_rows(server)

    response = client.post("/v1/predict", files={"instances": ("x.json", BODY, "application/json")})

    assert response.status_code == 415, response.text
    assert _captured_rows(server) == before


@pytest.mark.parametrize("content_type", ["application/json", "Application/JSON; charset=UTF-8",
                                          'application/json;charset="utf-8"'])
def test_json_with_or_without_a_utf8_charset_is_scored(server, client, content_type):
    before = _captured_rows(server)

    response = client.post("/v1/predict", content=BODY, headers={"content-type": content_type})

    assert response.status_code == 200, response.text
    assert _captured_rows(server) == before + 1


def test_the_415_comes_before_the_body_is_read(server):
    """Headers announce 100 bytes that never come: a 415 is answered at once, not after waiting for them."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        started = time.monotonic()
        raw.sendall(b"POST /v1/predict HTTP/1.1\r\nhost: test\r\ncontent-type: text/plain\r\ncontent-length: 100\r\n\r\n")
        answer = raw.recv(65536)
        elapsed = time.monotonic() - started

    assert answer.startswith(b"HTTP/1.1 415"), answer[:200]
    assert elapsed < 5  # the socket timeout is 10 s: an answer that waited for the body would never come
