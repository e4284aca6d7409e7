"""Load generation for the serving benchmarks (``serving.py``, ``soak.py``): an asyncio HTTP/1.1 client
over raw keep-alive sockets (a few µs per request, so the generator is not what is measured), sustained
runs with per-request latencies, and the overload run that checks no answered row is lost to capture.

Each connection sends one prebuilt request, waits for its answer, and sends the next (closed loop), so
"concurrency N" is N requests in flight at most.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field

import numpy as np
import orjson

_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


def http_request(host: str, port: int, path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    ).encode() + body


@dataclass
class LoadResult:
    seconds: float
    latencies: list[float] = field(default_factory=list)  # of 2xx answers, seconds
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0  # connections reset or refused (counted once per failed request)
    request_ids: list[str] = field(default_factory=list)  # of 200 answers, when collected

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) * 1000.0 if self.latencies else float("nan")

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500 and status != 503)


async def _connection(host: str, port: int, request: bytes, stop: asyncio.Event, result: LoadResult,
                      collect_ids: bool) -> None:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        result.errors += 1
        return
    try:
        while not stop.is_set():
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            body = await reader.readexactly(int(_LENGTH.search(head).group(1)))
            elapsed = time.perf_counter() - started
            status = int(head.split(b" ", 2)[1])
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if 200 <= status < 300:
                result.latencies.append(elapsed)
                if collect_ids:
                    result.request_ids.extend(orjson.loads(body)["request_ids"])
            if b"connection: close" in head.lower():
                break
    except (OSError, asyncio.IncompleteReadError):
        result.errors += 1
    finally:
        writer.close()


async def _run(host: str, port: int, request: bytes, seconds: float, connections: int, collect_ids: bool,
               at_deadline=None) -> LoadResult:
    result = LoadResult(seconds=0.0)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(_connection(host, port, request, stop, result, collect_ids))
             for _ in range(connections)]
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    if at_deadline is None:
        stop.set()
        await asyncio.gather(*tasks)
    else:  # e.g. signal the server while the requests are still in flight; they end when it closes
        at_deadline()
        await asyncio.wait(tasks, timeout=120)
        stop.set()
    result.seconds = time.perf_counter() - started
    return result


def sustained(host: str, port: int, path: str, body: bytes, seconds: float, connections: int,
              collect_ids: bool = False) -> LoadResult:
    """``connections`` closed-loop clients for ``seconds``; latencies of every 2xx answer."""
    return asyncio.run(_run(host, port, http_request(host, port, path, body), seconds, connections, collect_ids))


def overload(process: subprocess.Popen, host: str, port: int, body: bytes, clients: int, seconds: float,
             sig: int) -> LoadResult:
    """Predict requests from ``clients`` connections for ``seconds``, then ``sig`` to the server while they
    are in flight; returns the request ids of every 200 answer (the server's exit is awaited)."""

    def send_signal() -> None:
        process.send_signal(sig)

    result = asyncio.run(_run(host, port, http_request(host, port, "/v1/predict", body), seconds, clients,
                              collect_ids=True, at_deadline=send_signal))
    process.wait(timeout=120 if sig == signal.SIGTERM else 30)
    return result
