"""`housing-platform serve` in a background process, as `make demo` and the end-to-end tests run it.

The server is started exactly as a user starts it (the CLI, in its own process, reading the same
state folder), waited for through ``/ready``, asked which version it serves, and stopped with
SIGTERM so that its capture flush at shutdown is exercised too.
"""

from __future__ import annotations

import sys
from pathlib import Path

from housing_platform.config.settings import HousingSettings
from housing_platform.devtools.processes import LoopbackService, NotReady, http_ok, wait_until


class ModelServer(LoopbackService):
    """`housing-platform serve` in a background process, stopped gracefully (SIGTERM) on exit."""

    name = "server"

    def __init__(self, settings: HousingSettings, port: int | None = None, poll_interval_seconds: float = 1.0,
                 log_path: Path | None = None):
        super().__init__(settings.home, port, log_path)
        self.settings = settings
        self.poll_interval_seconds = poll_interval_seconds

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "housing_platform.cli.main", "serve", "--port", str(self.port),
            "--poll-interval-seconds", str(self.poll_interval_seconds), "--log-level", "warning",
        ]

    def environment(self) -> dict[str, str]:
        return super().environment() | {
            "HOUSING_HOME": str(self.settings.home), "HOUSING_DATA_PATH": str(self.settings.data_path),
        }

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
