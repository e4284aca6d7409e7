"""Capture never loses an answered row silently (issue 13, item 1): past the bound on capture rows in
memory, a predict request gets 503 with Retry-After *before* it is answered, and every request that was
answered 200 has its rows in the store.

The writer is held inside its INSERT (a listener on the real store's engine), so the bound is reached
on purpose rather than by racing a real overload; before the change the same burst got 200s whose
rows were dropped "queue full".
"""

from __future__ import annotations

import json
import re
import threading

import httpx
from sqlalchemy import event

from housing_platform.adapters.capture.store import CaptureStore
from housing_platform.core.schema import EXAMPLE_DISTRICT
from housing_platform_tests.server.conftest import ThreadServer

BOUND = 100


def body(rows: int) -> bytes:
    return json.dumps({"instances": [dict(EXAMPLE_DISTRICT)] * rows}).encode()


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_past_the_capture_bound_predict_gets_503_with_retry_after_and_no_answered_row_is_lost(models, tmp_path):
    capture_url = f"sqlite:///{tmp_path / 'capture.db'}"
    with ThreadServer(models, capture_url, poll_interval_seconds=0, capture_queue_rows=BOUND) as server, \
            httpx.Client(base_url=server.url, timeout=30, headers={"content-type": "application/json"}) as client:
        entered, release = threading.Event(), threading.Event()

        @event.listens_for(server.state.store.engine, "before_cursor_execute")
        def hold(conn, cursor, statement, parameters, context, executemany):
            if statement.startswith("INSERT INTO captures") and not release.is_set():
                entered.set()
                release.wait(20)

        answered: list[str] = []
        statuses: list[int] = []

        def predict(rows: int) -> httpx.Response:
            response = client.post("/v1/predict", content=body(rows))
            statuses.append(response.status_code)
            if response.status_code == 200:
                answered.extend(response.json()["request_ids"])
            return response

        try:
            assert predict(60).status_code == 200  # nothing in memory: admitted
            assert entered.wait(10), "the writer never started its INSERT"  # 60 rows held there
            assert predict(30).status_code == 200  # 90 of 100
            refused = predict(20)  # 110 > 100: refused before it is answered
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            assert "request_ids" not in refused.json() and "capture" in refused.json()["detail"]
            for _ in range(5):  # a burst of 5-row requests: two fit (100 of 100), three do not
                predict(5)
            assert statuses[3:] == [200, 200, 503, 503, 503]
            scrape = client.get("/metrics").text
            assert metric(scrape, "housing_capture_refused_requests_total") == 4
            assert metric(scrape, "housing_capture_refused_rows_total") == 20 + 3 * 5
            assert metric(scrape, "housing_capture_rows_in_memory") == BOUND
        finally:
            release.set()
        assert server.state.flush_captures(timeout=10)
        assert predict(20).status_code == 200  # room again once written
        assert server.state.flush_captures(timeout=10)
        stats = server.state.writer.stats()
        assert (stats.dropped, stats.written, stats.refused_requests) == (0, len(answered), 4)

    with CaptureStore(capture_url) as store:
        assert set(store.read_captures()["request_id"]) == set(answered)  # every answered row, nothing else
    assert len(answered) == 60 + 30 + 5 + 5 + 20
