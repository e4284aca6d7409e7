"""How the server runs as processes: the uvicorn settings every serving process shares
(:func:`server_settings`), and ``housing-platform serve --workers N`` — N processes, each the whole
server, answering on one listening port.

**Why uvicorn's own supervisor** (``uvicorn.supervisors.Multiprocess``, what ``uvicorn --workers N``
runs) rather than N processes of our own each binding the port with ``SO_REUSEPORT``: it is the
maintained, tested path of the server we already run. The parent binds the socket once and hands it
to N spawned workers; it forwards SIGTERM / SIGINT to each and waits for them (each worker then does
exactly what a single server does: finishes in-flight requests, flushes its captures, exits); it pings
every worker and replaces one that died or hangs; SIGHUP replaces them one by one, SIGTTIN / SIGTTOU
add or remove one. ``SO_REUSEPORT`` would need all of that written and tested here again, plus a
Linux-only socket option — and the kernel would spread connections by a hash of their addresses
rather than to whichever worker is free to accept.

What a worker needs that uvicorn's supervisor does not give:

- the supervisor pickles its ``uvicorn.Config`` into each spawned worker, and our HTTP protocol class
  (``http_protocol.bounded_protocol``) is built at run time, so it cannot travel: :class:`WorkerConfig`
  carries the :class:`ServingConfig` instead and builds the protocol class and the app in the worker
  (``load``), and sets up the same logging there (``configure_logging``: a spawned worker starts fresh);
- a worker whose shutdown flush lost capture rows exits with :data:`CAPTURES_LOST` (the app's
  ``on_stopped`` hook), so the parent can say so with its exit code as a single server does. A worker
  stopped gracefully by the SIGTERM the parent forwards ends *by* that signal (uvicorn re-raises it
  once the shutdown is done): :data:`CLEAN_STOPS`.

Each worker has its own model manager polling the alias, its own capture writer (the capture store
takes N writers: SQLite in WAL mode with a busy timeout, see ``adapters/capture/sqlite_file.py``;
PostgreSQL), its own spill segment, and its own ``/metrics``: a scrape is answered by whichever
worker accepts the connection. Request ids are UUIDv7 with 74 random bits from ``os.urandom`` in
each process, so workers cannot collide.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
from typing import Any

import uvicorn

from housing_platform.server.http_protocol import bounded_protocol, uvicorn_options
from housing_platform.server.server_config import ServingConfig

logger = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CAPTURES_LOST = 1  # a worker's exit code when its shutdown flush lost capture rows
CLEAN_STOPS = frozenset({0, -signal.SIGTERM, -signal.SIGINT})  # a worker's exit codes after a graceful stop


def server_settings(config: ServingConfig, *, host: str, port: int, log_level: str) -> dict[str, Any]:
    """The ``uvicorn.Config`` keyword arguments of every serving process, one or one of N workers."""
    return {
        "host": host, "port": port, "loop": "uvloop", "access_log": False, "log_level": log_level,
        "timeout_graceful_shutdown": config.shutdown_flush_seconds, "lifespan": "on",
        **uvicorn_options(config),  # httptools with read deadlines, keep-alive timeout, connection cap
    }


def exit_if_captures_lost(state) -> None:
    """``on_stopped`` of a worker's app: exit with :data:`CAPTURES_LOST` when the flush dropped rows.

    Everything the worker owns is flushed and closed by then; only uvicorn's last log line is skipped.
    """
    writer = state.writer
    dropped = writer.stats().dropped if writer is not None else 0
    if dropped:
        logger.error("worker %d: %d capture rows were dropped at shutdown; exiting with code %d",
                     os.getpid(), dropped, CAPTURES_LOST)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(CAPTURES_LOST)


def worker_app(config: ServingConfig):
    """The app of one worker: the server's, exiting non-zero when its shutdown loses captures."""
    from housing_platform.server.app import create_app  # in the worker only: the parent never imports the model stack

    return create_app(config, on_stopped=exit_if_captures_lost)


class WorkerConfig(uvicorn.Config):
    """``uvicorn.Config`` of ``serve --workers N``: picklable (it travels to each spawned worker), with
    the serving settings; the app and the bounded HTTP protocol are built in the worker."""

    def __init__(self, serving: ServingConfig, *, host: str, port: int, log_level: str):
        self.serving = serving  # before super().__init__, which configures logging
        options = server_settings(serving, host=host, port=port, log_level=log_level)
        options["http"] = "httptools"  # replaced by the bounded protocol in load(), in the worker
        super().__init__(
            f"{__name__}:worker_app", factory=True, workers=serving.workers,
            timeout_worker_healthcheck=serving.worker_healthcheck_seconds, **options,
        )

    def configure_logging(self) -> None:
        super().configure_logging()
        logging.basicConfig(level=str(self.log_level).upper(), format=LOG_FORMAT)  # ours, in every worker too

    def load_app(self):
        return functools.partial(worker_app, self.serving)  # the factory uvicorn calls (factory=True)

    def load(self) -> None:
        super().load()
        self.http_protocol_class = bounded_protocol(self.serving)


def run_workers(config: WorkerConfig) -> list[int | None]:
    """Bind the port, run ``config.workers`` workers under uvicorn's supervisor until SIGTERM / SIGINT
    (or a worker fails to start), and return the exit codes of the workers it ended with.

    Raises ``SystemExit`` (uvicorn's) when the port cannot be bound.
    """
    from uvicorn.supervisors import Multiprocess

    sock = config.bind_socket()
    try:
        supervisor = Multiprocess(config, sockets=[sock])
        supervisor.run()
    finally:
        sock.close()
    return [process.exitcode for process in supervisor.processes]


__all__ = ["CAPTURES_LOST", "CLEAN_STOPS", "WorkerConfig", "run_workers", "server_settings", "worker_app"]
