"""The server state's capture coordination without HTTP: captures scheduled after a response count as
pending until they reach the writer, and the wait the feedback route and the shutdown use ends then.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import numpy as np

from housing_platform.server.routes import ROUTES
from housing_platform.server.server_config import ServingConfig
from housing_platform.server.state import RequestCapture, ServerState, new_request_ids


def make_state(tmp_path, **overrides) -> ServerState:
    """A state never started: no writer, so a capture reaches "the writer" as soon as it runs."""
    config = ServingConfig(tracking_uri="unused", artifact_root="unused",
                           capture_url=f"sqlite:///{tmp_path / 'capture.db'}", **overrides)
    return ServerState(config, None, registry_factory=lambda: None, loader=None, routes=ROUTES)


def run_in_own_loop(coroutine):
    """``asyncio.run`` in a thread of its own: other tests of the session (Playwright's sync API in the
    browser tests) may keep an event loop running in the main thread, where ``asyncio.run`` refuses."""
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(asyncio.run, coroutine).result()


def a_capture(rows: int) -> RequestCapture:
    return RequestCapture(served=None, instances=None, predictions=np.zeros(rows), request_ids=new_request_ids(rows),
                          latency_ms=1.0, captured_at=datetime.now(UTC))


def test_request_ids_are_distinct_time_ordered_uuid7_hex():
    before_ms = time.time_ns() // 1_000_000
    ids = new_request_ids(1000)
    later = new_request_ids(1)[0]
    after_ms = time.time_ns() // 1_000_000

    assert len(set(ids)) == 1000 and all(len(i) == 32 and i[12] == "7" and i[16] in "89ab" for i in ids)
    assert all(uuid.UUID(i).version == 7 for i in ids)
    # The first 48 bits are the Unix milliseconds of the call, so ids sort by time (the capture table's
    # primary key grows at its right edge instead of at random leaves).
    assert {int(i[:12], 16) for i in ids} <= set(range(before_ms, after_ms + 1))
    assert later[:12] >= ids[0][:12]
    assert a_capture(3).rows == 3


def test_waiting_for_scheduled_captures_ends_when_the_last_one_reaches_the_writer(tmp_path):
    state = make_state(tmp_path)

    async def scenario():
        assert await state.wait_captures_queued(0)  # none pending: no wait at all
        for _ in range(3):
            state.schedule_capture(a_capture(1))
        pending = state.pending_captures
        return pending, await state.wait_captures_queued(5.0), state.pending_captures

    assert run_in_own_loop(scenario()) == (3, True, 0)


def test_the_wait_times_out_while_a_capture_in_a_worker_thread_is_still_busy(tmp_path):
    state = make_state(tmp_path, inline_rows=0)  # every request is captured in a worker thread
    release = threading.Event()
    state.capture = lambda capture, deferred=False: release.wait(5)

    async def scenario():
        state.schedule_capture(a_capture(2))
        in_time = await state.wait_captures_queued(0.05)
        release.set()
        await state.drain_captures(5.0)
        return in_time, state.pending_captures, await state.wait_captures_queued(0)

    assert run_in_own_loop(scenario()) == (False, 0, True)
