"""Background processes on loopback for the demo, the end-to-end tests and the benchmarks.

One readiness helper (:func:`wait_until`) for everything that starts a process and waits for it to
answer — the model server, the Dagster webserver, moto's S3 server, the benchmarks' servers — so
each fails the same way: early, naming the process and its log, when the process exits, and with
the last answer seen when it does not become ready in time. :func:`stop` ends a process (or its
whole process group) by PID, gracefully first; :class:`LoopbackService` puts the two together for a
server on a free loopback port with a log file.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


class NotReady(Exception):
    """Raised by a probe to say "not yet", with what it saw (shown if the wait times out)."""


def wait_until(
    probe: Callable[[], T],
    *,
    what: str,
    timeout_seconds: float,
    interval_seconds: float = 0.2,
    process: subprocess.Popen | None = None,
    log_path: Path | None = None,
) -> T:
    """Call ``probe`` until it returns instead of raising :class:`NotReady`; return its value.

    Fails early with ``RuntimeError`` when ``process`` exits, and with ``TimeoutError`` after
    ``timeout_seconds``; both messages name ``what``, the last answer and ``log_path``.
    """
    where = f"; see {log_path}" if log_path else ""
    deadline = time.monotonic() + timeout_seconds
    last = "no answer"
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} before it was ready{where}")
        try:
            return probe()
        except NotReady as not_yet:
            last = str(not_yet)
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} was not ready within {timeout_seconds:g} s (last: {last}){where}")
        time.sleep(interval_seconds)


def http_ok(url: str, timeout_seconds: float = 2.0) -> Callable[[], dict | str]:
    """A probe for :func:`wait_until`: ``GET url`` answers 200 (returns the JSON body, or the text)."""
    import httpx

    def probe() -> dict | str:
        try:
            response = httpx.get(url, timeout=timeout_seconds)
        except httpx.TransportError as error:
            raise NotReady(repr(error)) from None
        if response.status_code != 200:
            raise NotReady(f"{response.status_code}: {response.text[:200]}")
        try:
            return response.json()
        except ValueError:
            return response.text

    return probe


def tcp_open(port: int, host: str = LOOPBACK) -> Callable[[], None]:
    """A probe for :func:`wait_until`: something accepts TCP connections on ``host:port``."""

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
        except OSError as error:
            raise NotReady(repr(error)) from None

    return probe


def stop(process: subprocess.Popen, timeout_seconds: float = 30.0, *, group: bool = False) -> int | None:
    """SIGTERM ``process`` (its process group with ``group=True``), SIGKILL after the timeout; its code."""
    if process.poll() is not None:
        return process.returncode

    def send(number: int) -> None:
        try:
            os.killpg(process.pid, number) if group else process.send_signal(number)
        except ProcessLookupError:
            pass

    send(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout_seconds)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        return process.wait(timeout=10)


class LoopbackService:
    """A server process on a free loopback port: logged to a file, ready-checked on entry, stopped on exit.

    Subclasses say how to start it (:meth:`command`, :meth:`environment`) and when it is ready
    (:meth:`wait_ready`); ``own_process_group`` makes the stop reach the children it starts.
    """

    name = "service"
    own_process_group = False
    cwd: Path | None = None

    def __init__(self, home: Path, port: int | None = None, log_path: Path | None = None):
        self.port = port or free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.log_path = log_path or home / "logs" / f"{self.name}-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def wait_ready(self, timeout_seconds: float) -> object:
        raise NotImplementedError

    def start(self) -> None:
        """Start the process without waiting (to start several at once); :meth:`wait_ready` next."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command(), env=self.environment(), cwd=self.cwd, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=self.own_process_group,
        )

    def __enter__(self):
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def stop(self, timeout_seconds: float = 60.0) -> int:
        """Stop gracefully (SIGTERM, SIGKILL after the timeout); the exit code (0 if never started)."""
        if self.process is None:
            return 0
        try:
            return stop(self.process, timeout_seconds, group=self.own_process_group)
        finally:
            self._log.close()

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.stop()
