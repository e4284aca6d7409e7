"""Fixtures of the server tests: the registered tiny models, and a model server on a free loopback port
(uvicorn in a daemon thread, sharing this process and its already-imported TensorFlow, so it starts in
about a second), one per test module, with an HTTP client for it.
"""

from __future__ import annotations

import threading

import httpx
import pytest

from housing_platform.devtools.processes import free_port
from housing_platform.devtools.tiny_models import RegisteredModels, wait_until_ready


class ThreadServer:
    """create_app() under uvicorn.Server in a daemon thread, on a free loopback port."""

    def __init__(self, models: RegisteredModels, capture_url: str, **overrides):
        import uvicorn

        from housing_platform.server.app import create_app
        from housing_platform.server.http_protocol import uvicorn_options
        from housing_platform.server.server_config import ServingConfig

        config = ServingConfig(
            model_uri=f"models:/{models.model_name}@champion",
            tracking_uri=models.tracking_uri,
            artifact_root=models.artifact_root,
            capture_url=capture_url,
            **overrides,
        )
        self.app = create_app(config)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=self.port, loop="uvloop", access_log=False,
                           log_level="warning", **uvicorn_options(config))  # as `housing-platform serve` runs it
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        wait_until_ready(self.url, timeout=60)
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    @property
    def state(self):
        return self.app.state.server


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
    capture_url = f"sqlite:///{tmp_path_factory.mktemp('capture') / 'capture.db'}"
    with ThreadServer(models, capture_url, poll_interval_seconds=0.2) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http
