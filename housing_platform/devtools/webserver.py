"""`dagster-webserver` for the platform's code location in a background process, on loopback.

Used by the browser tests and ``make screenshots``: started with the state folder's instance, waited
for until the code location has loaded (through the webserver's GraphQL endpoint), and stopped with
its whole process group (it starts a code-server child).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from housing_platform.config.settings import PROJECT_ROOT, HousingSettings
from housing_platform.devtools.platform_state import FOREIGN_STATE_VARIABLES
from housing_platform.devtools.processes import NotReady, free_port, stop, wait_until

class DagsterWebserver:
    """`dagster-webserver -m housing_platform.defs.definitions` on a free loopback port, serving ``settings``' instance."""

    def __init__(self, settings: HousingSettings, port: int | None = None, log_path: Path | None = None):
        self.settings = settings
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or settings.home / "logs" / f"webserver-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "DagsterWebserver":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {name: value for name, value in os.environ.items() if name not in FOREIGN_STATE_VARIABLES}
        env |= {
            "DAGSTER_HOME": str(self.settings.dagster_home),
            "HOUSING_HOME": str(self.settings.home),
            "HOUSING_DATA_PATH": str(self.settings.data_path),
        }
        command = [
            str(Path(sys.executable).parent / "dagster-webserver"),
            "-m", "housing_platform.defs.definitions", "-h", "127.0.0.1", "-p", str(self.port),
        ]
        self._log = self.log_path.open("ab")
        # A process group of its own: the webserver starts a code-server child that must stop with it.
        self.process = subprocess.Popen(command, env=env, cwd=PROJECT_ROOT, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self.wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

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

    def __exit__(self, *exc) -> None:
        if self.process is None:
            return
        try:
            stop(self.process, 30, group=True)
        finally:
            self._log.close()
            self.process = None
