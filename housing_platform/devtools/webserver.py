"""`dagster-webserver` for the platform's code location in a background process, on loopback.

Used by the browser tests and ``make screenshots``: started with the state folder's instance, waited
for until the code location has loaded (through the webserver's GraphQL endpoint), and stopped with
its whole process group (it starts a code-server child).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from housing_platform.config.settings import PROJECT_ROOT, HousingSettings
from housing_platform.devtools.platform_state import FOREIGN_STATE_VARIABLES
from housing_platform.devtools.processes import LoopbackService, NotReady, wait_until


class DagsterWebserver(LoopbackService):
    """`dagster-webserver -m housing_platform.defs.definitions` on a free loopback port, serving ``settings``' instance."""

    name = "webserver"
    # A process group of its own: the webserver starts a code-server child that must stop with it.
    own_process_group = True
    cwd = PROJECT_ROOT

    def __init__(self, settings: HousingSettings, port: int | None = None, log_path: Path | None = None):
        super().__init__(settings.home, port, log_path)
        self.settings = settings

    def command(self) -> list[str]:
        return [
            str(Path(sys.executable).parent / "dagster-webserver"),
            "-m", "housing_platform.defs.definitions", "-h", "127.0.0.1", "-p", str(self.port),
        ]

    def environment(self) -> dict[str, str]:
        env = {name: value for name, value in os.environ.items() if name not in FOREIGN_STATE_VARIABLES}
        return env | {
            "DAGSTER_HOME": str(self.settings.dagster_home),
            "HOUSING_HOME": str(self.settings.home),
            "HOUSING_DATA_PATH": str(self.settings.data_path),
        }

    def wait_ready(self, timeout_seconds: float = 240.0) -> None:
        """Until the server answers GraphQL and the code location is loaded without error."""
        import httpx

        query = ("{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
                 "locationOrLoadError { __typename ... on PythonError { message } } } } } }")

        def probe() -> list[dict]:
            try:
                response = httpx.post(f"{self.url}/graphql", json={"query": query}, timeout=10.0)
                entries = response.json()["data"]["workspaceOrError"]["locationEntries"]
            except (httpx.TransportError, KeyError, TypeError, ValueError) as error:
                raise NotReady(repr(error)) from None
            if not entries or any(entry["loadStatus"] != "LOADED" for entry in entries):
                raise NotReady(f"locations: {entries}")
            return entries

        entries = wait_until(probe, what="dagster-webserver", timeout_seconds=timeout_seconds, interval_seconds=0.5,
                             process=self.process, log_path=self.log_path)
        errors = [e for e in entries if e["locationOrLoadError"]["__typename"] != "RepositoryLocation"]
        if errors:
            raise RuntimeError(f"the code location failed to load: {errors}; see {self.log_path}")
