"""The model server's life: hot swaps of the champion under load, a version that fails to load, and
shutdown of a real ``housing-platform serve`` process by SIGTERM in the middle of traffic.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from housing_platform.adapters.capture.store import CaptureStore
from housing_platform.devtools.processes import free_port
from housing_platform.devtools.tiny_models import (
    RegisteredModels,
    records,
    subprocess_env,
    wait_until_ready,
)

pytestmark = pytest.mark.slow


# -- hot swap ----------------------------------------------------------------------------------


def test_champion_moves_are_swapped_in_under_concurrent_load_without_a_failed_request(server, models):
    registry = models.registry()
    first, second = models.versions
    expected = {v: models.scorer(v).score(models.test.head(3)) for v in models.versions}
    bodies = {"instances": records(models.test.head(3))}
    seen: dict[str, int] = {}
    failures: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            while not stop.is_set():
                try:
                    response = http.post("/v1/predict", json=bodies)
                except httpx.HTTPError as error:
                    failures.append(repr(error))
                    continue
                if response.status_code != 200:
                    failures.append(f"{response.status_code}: {response.text[:200]}")
                    continue
                body = response.json()
                version = body["model_version"]
                seen[version] = seen.get(version, 0) + 1
                if not np.allclose(body["predictions"], expected[version], rtol=1e-9):
                    failures.append(f"version {version} answered with another version's predictions")

    clients = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in clients:
        thread.start()
    try:
        time.sleep(0.5)
        registry.promote(second)
        deadline = time.monotonic() + 60
        while seen.get(second, 0) < 50 and time.monotonic() < deadline:
            time.sleep(0.05)
        registry.promote(first)  # and back: the previous version is swapped in again
        deadline = time.monotonic() + 60
        while server.state.manager.current.version != first and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in clients:
            thread.join(30)
        registry.promote(first)

    assert failures == []
    assert seen.get(first, 0) > 50 and seen.get(second, 0) >= 50
    assert server.state.manager.current.version == first
    metrics = httpx.get(f"{server.url}/metrics").text
    assert "housing_model_swaps_total 2.0" in metrics


def test_a_version_that_fails_to_load_keeps_the_old_one_serving(models, tmp_path):
    from housing_platform.scoring.verification import load_fast_scorer

    calls: list[str] = []

    def flaky_loader(uri: str):
        calls.append(uri)
        if uri.endswith(f"/{models.versions[1]}"):
            raise OSError("artifact store unreachable")
        return load_fast_scorer(uri)

    from housing_platform.server.model_manager import ModelManager

    manager = ModelManager(f"models:/{models.model_name}@champion", models.registry, loader=flaky_loader)
    assert manager.check_now() and manager.current.version == models.versions[0]
    registry = models.registry()
    try:
        registry.promote(models.versions[1])
        assert manager.check_now() is False
    finally:
        registry.promote(models.versions[0])
    assert manager.current.version == models.versions[0]
    assert "artifact store unreachable" in manager.last_error


# -- shutdown: a real process, SIGTERM ---------------------------------------------------------


def _serve(models: RegisteredModels, home: Path, capture_url: str, port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "housing_platform.cli.main", "serve", "--port", str(port), "--poll-interval-seconds", "0",
         "--log-level", "warning"],
        env=subprocess_env(models, home, capture_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _load_then_sigterm(process: subprocess.Popen, url: str, models: RegisteredModels) -> tuple[set[str], int]:
    """Send requests from 3 clients until SIGTERM lands mid-traffic; the ids answered 200, exit code."""
    try:
        wait_until_ready(url, timeout=150, process=process)
        rows = records(models.test.head(400))
        answered: set[str] = set()
        lock = threading.Lock()
        stop = threading.Event()

        def send(sizes: list[int]) -> None:
            with httpx.Client(base_url=url, timeout=30) as http:
                i = 0
                while not stop.is_set():
                    size = sizes[i % len(sizes)]
                    i += 1
                    try:
                        response = http.post("/v1/predict", json={"instances": rows[:size]})
                    except httpx.HTTPError:
                        return  # the server stopped accepting: this request was never scored
                    if response.status_code != 200:
                        return
                    with lock:
                        answered.update(response.json()["request_ids"])

        senders = [threading.Thread(target=send, args=(sizes,)) for sizes in ([1], [7, 1, 3], [400, 250])]
        for thread in senders:
            thread.start()
        time.sleep(1.5)
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=90)
        stop.set()
        for thread in senders:
            thread.join(30)
        return answered, code
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_sigterm_flushes_every_capture_and_nothing_is_lost_across_restarts(models, tmp_path):
    """Two server processes on one capture store, stopped by SIGTERM in the middle of traffic.

    The second process is started before the first stops (as a rolling restart does; it also halves
    the test's time, TensorFlow's import being most of a start), but gets traffic only afterwards.
    """
    capture_url = f"sqlite:///{tmp_path / 'capture.db'}"
    home = tmp_path / "state"
    ports = free_port(), free_port()
    processes = [_serve(models, home, capture_url, port) for port in ports]
    try:
        first, code_first = _load_then_sigterm(processes[0], f"http://127.0.0.1:{ports[0]}", models)
        store = CaptureStore(capture_url)
        after_first = set(store.read_captures()["request_id"])
        second, code_second = _load_then_sigterm(processes[1], f"http://127.0.0.1:{ports[1]}", models)
        after_second = store.read_captures()
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    assert code_first == 0 and code_second == 0
    assert len(first) > 100 and len(second) > 100
    assert after_first == first  # exactly the rows answered before SIGTERM: none lost, none extra
    assert len(after_second) == len(first) + len(second)
    assert set(after_second["request_id"]) == first | second


def test_serve_refuses_a_malformed_model_uri_with_exit_code_2(capsys):
    from housing_platform.cli.main import main

    assert main(["serve", "--model-uri", "runs:/abc/model"]) == 2
    assert "models:/<name>@<alias>" in capsys.readouterr().err
