"""`housing-platform serve` in a background process, as `make demo` and the end-to-end tests run it.

The server is started exactly as a user starts it (the CLI, in its own process, reading the same
state folder), waited for through ``/ready``, asked which version it serves, and stopped with
SIGTERM so that its capture flush at shutdown is exercised too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from housing_platform.config.settings import HousingSettings
from housing_platform.devtools.processes import NotReady, free_port, http_ok, stop, wait_until


class ModelServer:
    """`housing-platform serve` in a background process, stopped gracefully (SIGTERM) on exit."""

    def __init__(self, settings: HousingSettings, port: int | None = None, poll_interval_seconds: float = 1.0,
                 log_path: Path | None = None):
        self.settings = settings
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.poll_interval_seconds = poll_interval_seconds
        self.log_path = log_path or settings.home / "logs" / f"server-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> ModelServer:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "HOUSING_HOME": str(self.settings.home), "HOUSING_DATA_PATH": str(self.settings.data_path)}
        command = [
            sys.executable, "-m", "housing_platform.cli.main", "serve", "--port", str(self.port),
            "--poll-interval-seconds", str(self.poll_interval_seconds), "--log-level", "warning",
        ]
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(command, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            self.wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def wait_ready(self, timeout_seconds: float = 180.0) -> dict:
        return wait_until(
            http_ok(f"{self.url}/ready"), what="the model server", timeout_seconds=timeout_seconds,
            interval_seconds=0.25, process=self.process, log_path=self.log_path,
        )

    def serving_version(self) -> str:
        import httpx

        return str(httpx.get(f"{self.url}/ready", timeout=5.0).json().get("model_version"))

    def wait_for_version(self, version: str, timeout_seconds: float = 120.0) -> bool:
        def probe() -> None:
            serving = self.serving_version()
            if serving != str(version):
                raise NotReady(f"serving version {serving}")

        try:
            wait_until(probe, what=f"the swap to version {version}", timeout_seconds=timeout_seconds,
                       interval_seconds=0.5, process=self.process, log_path=self.log_path)
        except TimeoutError:
            return False
        return True

    def stop(self, timeout_seconds: float = 60.0) -> int:
        if self.process is None:
            return 0
        try:
            return stop(self.process, timeout_seconds)
        finally:
            self._log.close()

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.stop()
