"""uvicorn's httptools protocol with the limits uvicorn lacks: request read deadlines and a connection cap.

uvicorn bounds the idle time *between* requests (``timeout_keep_alive``) and, with
``limit_concurrency``, answers 503 — but only once a request's headers are complete. Nothing bounds
how long a client may take to send its headers or its body (uvicorn issue #157 lists
``--timeout-request-start`` / ``--timeout-request-complete`` as not done), so half-sent requests hold
their sockets, and their file descriptors, for ever: 300 of them took a server limited to 256 file
descriptors down. :class:`BoundedHttpToolsProtocol` adds, per connection:

- a **header deadline**: the request line and headers must arrive within ``header_read_timeout_seconds``
  of the connection opening (or of the first byte of a keep-alive connection's next request), else
  ``408`` and close — one timer per connection, nothing per byte, so a client trickling a byte at a
  time cannot extend it;
- a **body deadline**: the body must be complete within ``body_read_timeout_seconds`` of the headers,
  else the connection is closed (the route sees a disconnect; nothing is scored or captured);
- a **header size cap**: more than ``max_header_bytes`` before the headers end → ``431`` and close
  (uvicorn's h11 has ``h11_max_incomplete_event_size``; httptools has no limit of its own);
- a **connection cap**: a connection beyond ``max_connections`` open ones is answered ``503`` with
  ``Retry-After`` and closed as soon as it is accepted, before anything is read, so the file descriptor
  is free again at once. The cap is lowered to the process's open-files limit minus
  :data:`RESERVED_FILE_DESCRIPTORS` (the registry, the capture store, libraries), so connections can
  never exhaust the descriptors the server itself needs.

:func:`uvicorn_options` returns the ``uvicorn.Config`` keyword arguments for a :class:`ServingConfig`:
every server the project builds (the CLI, the tests' in-process server) passes them.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from housing_platform.server.server_config import ServingConfig

logger = logging.getLogger(__name__)

RESERVED_FILE_DESCRIPTORS = 64  # what a serving process holds besides its connections: ~40 measured


def _response(status: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 " + status + b"\r\ncontent-length: 0\r\nconnection: close\r\n" + extra + b"\r\n"


REQUEST_TIMEOUT = _response(b"408 Request Timeout")
HEADERS_TOO_LARGE = _response(b"431 Request Header Fields Too Large")


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with the deadlines and caps above; :func:`bounded_protocol` sets the class limits."""

    header_read_timeout_seconds: float = 10.0
    body_read_timeout_seconds: float = 30.0
    max_header_bytes: int = 64 * 1024
    max_connections: int = 1_000
    retry_after_seconds: int = 1

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_deadline: asyncio.TimerHandle | None = None
        self._awaiting_headers = False
        self._header_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            logger.warning("refused a connection: %d open, at most %d", len(self.connections) - 1, self.max_connections)
            self._close_with(_response(b"503 Service Unavailable", b"retry-after: %d\r\n" % self.retry_after_seconds))
            return
        self._expect_headers()

    def data_received(self, data: bytes) -> None:
        awaiting = self._awaiting_headers
        super().data_received(data)
        if awaiting and self._awaiting_headers and not self.transport.is_closing():
            self._header_bytes += len(data)
            if self._header_bytes > self.max_header_bytes:
                self._close_with(HEADERS_TOO_LARGE)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._awaiting_headers:  # the next request of a keep-alive connection: its own deadline
            self._expect_headers()

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        self._arm(self.body_read_timeout_seconds, self._body_timed_out)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _expect_headers(self) -> None:
        self._awaiting_headers = True
        self._header_bytes = 0
        self._arm(self.header_read_timeout_seconds, self._headers_timed_out)

    def _arm(self, seconds: float, callback) -> None:
        self._disarm()
        self._read_deadline = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _headers_timed_out(self) -> None:
        self._read_deadline = None
        self._close_with(REQUEST_TIMEOUT)

    def _body_timed_out(self) -> None:
        # The route is waiting for the body: closing makes it see a disconnect (no answer can be sent).
        self._read_deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def _close_with(self, response: bytes) -> None:
        self._disarm()
        self._awaiting_headers = False
        if not self.transport.is_closing():
            self.transport.write(response)
            self.transport.close()


def connection_cap(configured: int) -> int:
    """``configured``, lowered to the open-files limit minus :data:`RESERVED_FILE_DESCRIPTORS` (at least 1)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    return max(1, min(configured, soft - RESERVED_FILE_DESCRIPTORS))


def bounded_protocol(config: ServingConfig) -> type[BoundedHttpToolsProtocol]:
    """A protocol class carrying ``config``'s limits (uvicorn instantiates the class it is given)."""
    cap = connection_cap(config.max_connections)
    if cap < config.max_connections:
        logger.warning("max_connections lowered from %d to %d: the open-files limit leaves room for no more",
                       config.max_connections, cap)
    return type("BoundedHttpToolsProtocol", (BoundedHttpToolsProtocol,), {
        "header_read_timeout_seconds": config.header_read_timeout_seconds,
        "body_read_timeout_seconds": config.body_read_timeout_seconds,
        "max_header_bytes": config.max_header_bytes,
        "max_connections": cap,
    })


def uvicorn_options(config: ServingConfig) -> dict[str, Any]:
    """The ``uvicorn.Config`` keyword arguments that bound a server's resources by ``config``."""
    protocol = bounded_protocol(config)
    return {
        "http": protocol,
        "timeout_keep_alive": config.keep_alive_timeout_seconds,
        # uvicorn's own 503 once headers are complete also bounds requests still running for clients that
        # left; +1: its test counts the connection being served, ours (at accept) does not.
        "limit_concurrency": protocol.max_connections + 1,
        "h11_max_incomplete_event_size": config.max_header_bytes,
    }


__all__ = ["BoundedHttpToolsProtocol", "bounded_protocol", "connection_cap", "uvicorn_options"]
