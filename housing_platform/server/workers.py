"""How the server runs as processes: the uvicorn settings every serving process shares
(:func:`server_settings`), and ``housing-platform serve --workers N`` — N processes, each the whole
server, answering on one listening port.

**Why uvicorn's own supervisor** (``uvicorn.supervisors.Multiprocess``, what ``uvicorn --workers N``
runs) rather than a supervisor of our own: it is the maintained, tested path of the server we already
run. It forwards SIGTERM / SIGINT to each worker and waits for them (each worker then does exactly what
a single server does: finishes in-flight requests, flushes its captures, exits); it pings every worker
and replaces one that died or hangs; SIGHUP replaces them one by one, SIGTTIN / SIGTTOU add or remove
one.

**Why a listening socket per worker** (``SO_REUSEPORT``) rather than uvicorn's one shared socket: with
one shared socket, whichever worker wakes first accepts every connection waiting, so a burst of
keep-alive connections lands on one worker — measured here, 8 connections opened together went 8 / 0
in 5 bursts of 8, 7 / 1 once, 6 / 2 once, 4 / 4 once, and two workers then serve about what one does.
With ``SO_REUSEPORT`` each worker listens on a socket of its own and the kernel spreads new connections
over them by a hash of their addresses. The parent still binds the port before any worker starts (a
port in use fails at once, exit 1), with a socket that never listens (:class:`_PortReservation`); uvicorn
hands its sockets to each spawned worker by pickling them, and this one arrives in each worker as a new
listening socket on the same address. The cost: a connection still waiting in a stopping worker's
backlog is reset rather than taken by another worker (a rolling SIGHUP restart), and the port check is
done once at start (another server started on the same port in the same seconds would share it).

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
import socket
import sys
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE

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

    def bind_socket(self) -> socket.socket:
        """In the parent: check nothing listens on the port, then reserve it (see :class:`_PortReservation`)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:  # fails while anything listens on the port
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # (connections in TIME_WAIT do not count)
                probe.bind((self.host, self.port))
                probe.listen(1)
                address = probe.getsockname()
            reservation = _PortReservation(family, socket.SOCK_STREAM)
            _reuse_port(reservation)
            reservation.bind(address)
        except OSError as error:
            logger.error("cannot serve on %s:%d: %s", self.host, self.port, error)
            sys.exit(STARTUP_FAILURE)
        logger.info("serving on http://%s:%d with %d workers, a listening socket each (Ctrl-C to stop)",
                    self.host, address[1], self.workers)
        return reservation


class _PortReservation(socket.socket):
    """The parent's socket: bound to the port with ``SO_REUSEPORT`` but never listening, so it gets no
    connections. Pickled into a worker (uvicorn's supervisor passes each worker its sockets so), it
    becomes that worker's own listening socket on the same address: :func:`_worker_socket`."""

    def __reduce__(self):
        return _worker_socket, (self.family, self.getsockname())


def _worker_socket(family: int, address: tuple) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    _reuse_port(sock)
    sock.bind(address)  # uvicorn's server listens on it
    return sock


def _reuse_port(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)


def run_workers(config: WorkerConfig) -> list[int | None]:
    """Bind the port, run ``config.workers`` workers under uvicorn's supervisor until SIGTERM / SIGINT
    (or a worker fails to start), and return the exit codes of the workers it ended with.

    Raises ``SystemExit`` when the port cannot be bound.
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
