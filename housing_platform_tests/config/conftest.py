"""moto's S3 server on loopback for the production-profile tests (helpers: ``services.py``).

Started once for the package on a free port and stopped by PID afterwards; every S3 call is a real
HTTP request to it. Skips, with the reason, only when moto is not installed or does not start.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from housing_platform.devtools.processes import free_port, stop, tcp_open, wait_until

MOTO_START_SECONDS = 20.0


@pytest.fixture(scope="package")
def moto_endpoint(tmp_path_factory) -> Iterator[str]:
    executable = Path(sys.executable).with_name("moto_server")
    if not executable.exists():
        found = shutil.which("moto_server")
        if found is None:
            pytest.skip("moto_server is not installed (pip install 'moto[server]')")
        executable = Path(found)
    port = free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto_server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(executable), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        try:
            wait_until(tcp_open(port), what="moto_server", timeout_seconds=MOTO_START_SECONDS, interval_seconds=0.1,
                       process=process, log_path=log_path)
        except (RuntimeError, TimeoutError) as error:
            pytest.skip(f"moto_server did not start on 127.0.0.1:{port}: {error}: {log_path.read_text()[-500:]}")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process, 10)


