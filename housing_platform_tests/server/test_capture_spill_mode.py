"""``capture_overflow: spill`` on a real server on loopback: past the capture bound every predict request
is still answered 200 (its rows fsynced to the spill first), nothing is refused, /metrics and /ready
show what waits in the spill, and after a shutdown (uvicorn's SIGTERM path: ``should_exit``) and a
restart every answered row is in the store and the spill folder is empty.

The writer is held inside its INSERT (a listener on the real store's engine), so the bound is reached
on purpose rather than by racing a real overload.
"""

from __future__ import annotations

import threading

import httpx
from sqlalchemy import event

from housing_platform.adapters.capture.store import CaptureStore
from housing_platform.devtools.processes import wait_until
from housing_platform_tests.server.conftest import ThreadServer
from housing_platform_tests.server.test_capture_admission import body, metric

BOUND = 100


def test_spill_mode_answers_every_request_past_the_bound_and_a_restart_stores_every_answered_row(models, tmp_path):
    capture_url = f"sqlite:///{tmp_path / 'capture.db'}"
    spill_dir = tmp_path / "spill"
    settings = {"poll_interval_seconds": 0, "capture_queue_rows": BOUND, "capture_overflow": "spill",
                "capture_spill_dir": str(spill_dir)}
    answered: list[str] = []
    with ThreadServer(models, capture_url, **settings) as server, \
            httpx.Client(base_url=server.url, timeout=30, headers={"content-type": "application/json"}) as client:
        entered, release = threading.Event(), threading.Event()

        @event.listens_for(server.state.store.engine, "before_cursor_execute")
        def hold(conn, cursor, statement, parameters, context, executemany):
            if statement.startswith("INSERT INTO captures") and not release.is_set():
                entered.set()
                release.wait(20)

        try:
            statuses = []
            for rows in (60, 30, 20, 5, 5, 5, 5, 5, 40):  # 175 rows against a bound of 100
                response = client.post("/v1/predict", content=body(rows))
                statuses.append(response.status_code)
                if response.status_code == 200:
                    answered.extend(response.json()["request_ids"])
                if rows == 60:
                    assert entered.wait(10), "the writer never started its INSERT"
            assert statuses == [200] * 9  # nothing refused
            scrape = client.get("/metrics").text
            assert metric(scrape, "housing_capture_refused_requests_total") == 0
            spilled = metric(scrape, "housing_capture_spilled_rows_total")
            assert spilled == 175 - BOUND and metric(scrape, "housing_capture_spill_bytes") > 0
            ready = client.get("/ready").json()["capture"]
            assert ready["overflow"] == "spill" and ready["spilled_rows"] == spilled and ready["spill_bytes"] > 0
        finally:
            release.set()
    assert len(answered) == 175

    with ThreadServer(models, capture_url, **settings) as restarted:
        wait_until(lambda: restarted.state.writer.spill.stats().bytes == 0, what="the spill drained",
                   timeout_seconds=20, interval_seconds=0.05)
    assert list(spill_dir.glob("spill-*.log")) == []
    with CaptureStore(capture_url) as store:
        stored = set(store.read_captures()["request_id"])
    assert stored == set(answered)
