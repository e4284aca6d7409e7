"""``housing-platform serve --workers N``: N processes behind one port under uvicorn's supervisor
(``server/workers.py``) — every worker answers, every answered row is captured, ids never collide,
and SIGTERM to the parent stops every worker.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from housing_platform.adapters.capture.store import CaptureStore
from housing_platform.devtools.processes import free_port
from housing_platform.devtools.tiny_models import RegisteredModels, records, subprocess_env, wait_until_ready
from housing_platform.server.server_config import ServingConfig
from housing_platform.server.workers import WorkerConfig

WORKERS = 2
REQUESTS_PER_CONNECTION = 20
ROWS_PER_REQUEST = 3


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _answer_on_one_connection(url: str, rows: list[dict]) -> tuple[int, list[int], list[str]]:
    """On one keep-alive connection: ``/ready`` (which worker holds it), then predict requests on it;
    returns the worker's pid, the statuses and the request ids answered."""
    with httpx.Client(base_url=url, timeout=30, limits=httpx.Limits(max_connections=1)) as http:
        ready = http.get("/ready")
        assert ready.status_code == 200, ready.text
        statuses, ids = [], []
        for _ in range(REQUESTS_PER_CONNECTION):
            response = http.post("/v1/predict", json={"instances": rows})
            statuses.append(response.status_code)
            if response.status_code == 200:
                ids.extend(response.json()["request_ids"])
        return ready.json()["pid"], statuses, ids


def _every_worker_ready(url: str, process: subprocess.Popen, timeout: float) -> set[int]:
    """Poll ``/ready`` on new connections until ``WORKERS`` different processes have answered 200."""
    ready: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(ready) < WORKERS and time.monotonic() < deadline:
        assert process.poll() is None, f"serve exited with {process.returncode}"
        try:
            response = httpx.get(f"{url}/ready", timeout=5)
        except httpx.TransportError:
            time.sleep(0.2)
            continue
        if response.status_code == 200:
            ready.add(response.json()["pid"])
        else:
            time.sleep(0.2)
    return ready


@pytest.mark.slow
def test_two_workers_answer_capture_every_row_and_all_stop_on_sigterm(models: RegisteredModels, tmp_path: Path):
    capture_url = f"sqlite:///{tmp_path / 'capture.db'}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "housing_platform.cli.main", "serve", "--port", str(port), "--workers", str(WORKERS),
             "--poll-interval-seconds", "0", "--log-level", "info"],
            env=subprocess_env(models, tmp_path / "state", capture_url), stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        wait_until_ready(url, timeout=150, process=process)
        ready_pids = _every_worker_ready(url, process, timeout=150)
        assert len(ready_pids) == WORKERS, log_path.read_text()[-3000:]

        rows = records(models.test.head(ROWS_PER_REQUEST))
        by_worker: dict[int, list[str]] = {}
        statuses: list[int] = []
        # Connections go to whichever worker accepts first: open them until each worker has answered on one
        # (and at least 2 per worker's worth of requests were sent).
        for _ in range(40):
            pid, answered, ids = _answer_on_one_connection(url, rows)
            statuses.extend(answered)
            by_worker.setdefault(pid, []).extend(ids)
            if len(by_worker) == WORKERS and len(statuses) >= 2 * WORKERS * REQUESTS_PER_CONNECTION:
                break

        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log_text = log_path.read_text()

    assert set(by_worker) == ready_pids  # both workers answered predict requests
    assert statuses and set(statuses) == {200}
    answered = [request_id for ids in by_worker.values() for request_id in ids]
    assert len(answered) == len(statuses) * ROWS_PER_REQUEST
    assert len(set(answered)) == len(answered)  # no request id twice, within or across workers
    assert code == 0, log_text[-3000:]
    with CaptureStore(capture_url) as store:
        captured = store.read_captures()["request_id"]
    assert len(captured) == len(answered) and set(captured) == set(answered)  # every answered row, nothing else
    assert [pid for pid in ready_pids if _alive(pid)] == []  # every worker is gone with the parent
    assert log_text.count("capture flushed at shutdown") == WORKERS  # each worker flushed its own writer


def test_worker_config_travels_to_a_worker_and_builds_the_bounded_protocol_there(models: RegisteredModels,
                                                                                 tmp_path: Path):
    """uvicorn's supervisor pickles its config into each spawned worker: ours carries the serving settings and
    builds, in the worker, the app and the HTTP protocol with their limits (a run-time class cannot be pickled)."""
    serving = ServingConfig(
        model_uri=f"models:/{models.model_name}@champion", tracking_uri=models.tracking_uri,
        artifact_root=models.artifact_root, capture_url=f"sqlite:///{tmp_path / 'capture.db'}", workers=3,
        header_read_timeout_seconds=3.5, max_connections=77, worker_healthcheck_seconds=12,
    )
    config = pickle.loads(pickle.dumps(WorkerConfig(serving, host="127.0.0.1", port=free_port(), log_level="warning")))
    assert config.workers == 3 and config.timeout_worker_healthcheck == 12
    assert config.timeout_graceful_shutdown == serving.shutdown_flush_seconds and config.limit_concurrency == 78
    config.load()  # what the worker does before serving (the app's lifespan, which loads the model, is not run)
    assert config.http_protocol_class.header_read_timeout_seconds == 3.5
    assert config.http_protocol_class.max_connections == 77
    assert config.loaded_app.app.state.server.config == serving  # under uvicorn's proxy-headers middleware


def test_a_worker_whose_shutdown_lost_captures_exits_with_code_1_and_one_that_lost_none_returns(monkeypatch):
    from types import SimpleNamespace

    from housing_platform.server import workers

    exits: list[int] = []
    monkeypatch.setattr(workers.os, "_exit", exits.append)

    def state(dropped: int):
        return SimpleNamespace(writer=SimpleNamespace(stats=lambda: SimpleNamespace(dropped=dropped)))

    workers.exit_if_captures_lost(state(0))
    workers.exit_if_captures_lost(SimpleNamespace(writer=None))  # capture off: nothing to lose
    assert exits == []
    workers.exit_if_captures_lost(state(3))
    assert exits == [workers.CAPTURES_LOST] and workers.CAPTURES_LOST not in workers.CLEAN_STOPS


def test_the_parent_reserves_the_port_and_each_worker_gets_a_listening_socket_of_its_own(tmp_path: Path):
    """What a worker unpickles from the parent's socket is a new SO_REUSEPORT socket on the same address (so
    the kernel spreads connections over the workers); a port something listens on is refused at start."""
    import socket
    from multiprocessing.reduction import ForkingPickler

    serving = ServingConfig(tracking_uri="", artifact_root="", capture_url="", workers=2)
    reservation = WorkerConfig(serving, host="127.0.0.1", port=0, log_level="warning").bind_socket()
    sockets: list[socket.socket] = []
    try:
        sockets += [pickle.loads(ForkingPickler.dumps(reservation)) for _ in range(2)]  # as uvicorn's supervisor sends it
        for sock in sockets:
            assert sock.getsockname() == reservation.getsockname() and sock.fileno() != reservation.fileno()
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
            sock.listen(8)  # both workers listen on the one port
        with pytest.raises(SystemExit):  # a second server on a port in use stops at once
            WorkerConfig(serving, host="127.0.0.1", port=reservation.getsockname()[1], log_level="warning").bind_socket()
    finally:
        reservation.close()
        for sock in sockets:
            sock.close()
