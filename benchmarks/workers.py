"""Throughput across cores: ``housing-platform serve`` with 1 and with N workers against a FastAPI
constant-response floor, side by side in one run.

    .venv/bin/python benchmarks/workers.py [--workers 2] [--seconds 8] [--concurrency 8 16] [--rounds 1]

Three servers on loopback, started together and measured one at a time:

* **floor**: a FastAPI app whose ``POST /v1/predict`` reads the body and answers a constant JSON
  document — no parsing, no model, no capture — under the same uvicorn settings as ours
  (``server/workers.py``'s ``server_settings``: uvloop, our bounded httptools protocol, no access log),
  one process. What uvicorn + FastAPI cost per request here: no server of ours can beat it per process;
* **ours, 1 worker** and **ours, N workers** (``serve --workers N``): the same registered version,
  capture ON at 100 % into a SQLite store of its own (the N workers share theirs, as in production);
* with ``--capture-off-too``, also ours with 1 worker and capture off: what capture costs.

Each runs single-row requests for ``--seconds`` per concurrency from this script's asyncio load
generator (closed loop, keep-alive, in this process: it shares the cores with the servers). Every
connection first asks ``/ready`` which process holds it, so the table shows how the connections were
spread over the workers. Printed: requests/s, p50 / p99, the ratio of each to the floor of the same
round, the servers' CPU time per request (user + system of the server's processes, from ``/proc``:
what a request costs, whatever else runs on the machine), and the load average (the machine is
shared: compare ratios, not absolutes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from fastapi import Request  # at module level: the floor's route annotation must resolve (postponed annotations)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serving  # noqa: E402  (benchmarks/serving.py: the model, sample rows, stop)

from housing_platform.devtools.processes import free_port, http_ok, wait_until  # noqa: E402

HOST = "127.0.0.1"
_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
_READY = f"GET /ready HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()


# -- the floor ------------------------------------------------------------------------------------


def run_floor(port: int) -> None:
    """The floor server (this script with ``--floor-server``): constant answers under our uvicorn settings."""
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import Response

    from housing_platform.server.server_config import ServingConfig
    from housing_platform.server.workers import server_settings

    app = FastAPI()
    answer = json.dumps({"predictions": [452600.0], "model_version": "1", "request_ids": ["0" * 32]}).encode()

    @app.post("/v1/predict")
    async def predict(request: Request) -> Response:
        await request.body()
        return Response(answer, media_type="application/json")

    @app.get("/ready")
    async def ready() -> Response:
        return Response(json.dumps({"detail": "ready", "pid": os.getpid()}).encode(), media_type="application/json")

    config = ServingConfig(tracking_uri="", artifact_root="", capture_url="")  # only its HTTP limits are used
    uvicorn.Server(uvicorn.Config(app, **server_settings(config, host=HOST, port=port, log_level="warning"))).run()


# -- the servers ----------------------------------------------------------------------------------


def start(model, workdir: Path, workers_n: int, log, capture_off_too: bool = False) -> list[dict]:
    env = dict(os.environ) | model.env() | {"TF_CPP_MIN_LOG_LEVEL": "2"}
    servers = []

    def launch(name: str, command: list[str], workers: int, extra_env: dict) -> None:
        port = free_port()
        process = subprocess.Popen([*command, "--port", str(port)], env=env | extra_env, stdout=log,
                                   stderr=subprocess.STDOUT, cwd=serving.ROOT)
        servers.append({"name": name, "port": port, "process": process, "workers": workers})

    launch("floor (FastAPI constant)", [sys.executable, __file__, "--floor-server"], 1, {})
    for n in (1, workers_n):
        folder = workdir / f"ours-{n}"
        launch(f"ours, {n} worker{'s' if n > 1 else ''}",
               [sys.executable, "-m", "housing_platform.cli.main", "serve", "--model-uri", model.uri,
                "--poll-interval-seconds", "0", "--log-level", "warning", "--workers", str(n)],
               n, {"HOUSING_HOME": str(folder / "state"), "HOUSING_CAPTURE_URL": f"sqlite:///{folder / 'capture.db'}"})
    if capture_off_too:  # what capture costs per request
        folder = workdir / "ours-capture-off"
        launch("ours, 1 worker, capture off",
               [sys.executable, "-m", "housing_platform.cli.main", "serve", "--model-uri", model.uri,
                "--poll-interval-seconds", "0", "--log-level", "warning", "--capture-sample-percent", "0"],
               1, {"HOUSING_HOME": str(folder / "state"), "HOUSING_CAPTURE_URL": f"sqlite:///{folder / 'capture.db'}"})
    try:
        for server in servers:
            wait_ready(server)
    except BaseException:
        serving.stop([s["process"] for s in servers])
        raise
    return servers


def wait_ready(server: dict, timeout: float = 300.0) -> None:
    """``/ready`` 200 from every worker (new connections until each pid has answered)."""
    url = f"http://{HOST}:{server['port']}/ready"
    seen: set[int] = set()

    def every_worker() -> None:
        from housing_platform.devtools.processes import NotReady

        seen.add(http_ok(url)()["pid"])  # raises NotReady until a worker answers 200
        if len(seen) < server["workers"]:
            raise NotReady(f"{len(seen)} of {server['workers']} workers ready")

    wait_until(every_worker, what=server["name"], timeout_seconds=timeout, interval_seconds=0.05,
               process=server["process"])


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, every thread) of ``pid`` and the processes under it (its workers), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # gone meanwhile
                continue
            parents[int(entry.name)] = int(fields[1])
            times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
    tree, frontier = {pid}, [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        tree.update(children)
        frontier = children
    return sum(times.get(p, 0.0) for p in tree)


# -- the load -------------------------------------------------------------------------------------


async def _read(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    return head, await reader.readexactly(int(_LENGTH.search(head).group(1)))


async def _connection(port: int, request: bytes, stop: asyncio.Event, latencies: list[float], statuses: Counter,
                      per_worker: Counter) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(_READY)
        pid = json.loads((await _read(reader))[1])["pid"]
        while not stop.is_set():
            started = time.perf_counter()
            writer.write(request)
            head, _ = await _read(reader)
            latencies.append(time.perf_counter() - started)
            statuses[int(head.split(b" ", 2)[1])] += 1
            per_worker[pid] += 1
    finally:
        writer.close()


def measure(port: int, body: bytes, seconds: float, connections: int, pid: int | None = None) -> dict:
    request = serving.http_request(HOST, port, "/v1/predict", body)
    latencies: list[float] = []
    statuses: Counter = Counter()
    per_worker: Counter = Counter()

    async def run() -> float:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(_connection(port, request, stop, latencies, statuses, per_worker))
                 for _ in range(connections)]
        started = time.perf_counter()
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.gather(*tasks)
        return time.perf_counter() - started

    cpu_before = cpu_seconds(pid) if pid else 0.0
    elapsed = asyncio.run(run())
    cpu = cpu_seconds(pid) - cpu_before if pid else float("nan")
    requests = sum(statuses.values())
    return {"rps": requests / elapsed, "cpu_us": cpu / requests * 1e6 if requests else float("nan"), "p50": float(np.percentile(latencies, 50)) * 1e3,
            "p99": float(np.percentile(latencies, 99)) * 1e3, "non_2xx": requests - statuses[200],
            "spread": sorted(per_worker.values(), reverse=True)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-uri", default="models:/housing_price_model@champion")
    parser.add_argument("--workers", type=int, default=2, help="workers of the multi-worker server")
    parser.add_argument("--seconds", type=float, default=8.0, help="each measured run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--rounds", type=int, default=1, help="repeat every measurement (order rotated)")
    parser.add_argument("--capture-off-too", action="store_true",
                        help="also ours with 1 worker and capture off (--capture-sample-percent 0)")
    parser.add_argument("--floor-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_server:
        run_floor(args.port)
        return 0

    model = serving.benchmark_model(args.model_uri)
    print(f"model: {model.note}")
    workdir = Path(tempfile.mkdtemp(prefix="workers_benchmark_"))
    body = json.dumps({"instances": serving.sample_rows(1)}).encode()
    with (workdir / "servers.log").open("w") as log:
        servers = start(model, workdir, args.workers, log, args.capture_off_too)
    load_before = os.getloadavg()
    results = []
    try:
        for server in servers:  # warm-up: every worker's first requests (connections spread as they come)
            measure(server["port"], body, 1.0, 8)
        for round_ in range(args.rounds):
            for connections in args.concurrency:
                order = servers[round_ % len(servers):] + servers[:round_ % len(servers)]
                row = {}
                for server in order:
                    print(f"round {round_ + 1}, c={connections}: {server['name']} for {args.seconds:g} s ...", flush=True)
                    row[server["name"]] = measure(server["port"], body, args.seconds, connections, server["process"].pid)
                results.append((round_ + 1, connections, row))
    finally:
        serving.stop([s["process"] for s in servers])
    load_after = os.getloadavg()

    floor = servers[0]["name"]
    print(f"\n{'round':>5s} {'c':>3s}  {'server':26s}{'req/s':>9s}{'/ floor':>9s}{'p50 ms':>8s}{'p99 ms':>8s}"
          f"{'non-2xx':>8s}{'CPU µs/req':>11s}  requests per worker")
    for round_, connections, row in results:
        for server in servers:
            r = row[server["name"]]
            print(f"{round_:>5d} {connections:>3d}  {server['name']:26s}{r['rps']:>9,.0f}{r['rps'] / row[floor]['rps']:>9.2f}"
                  f"{r['p50']:>8.2f}{r['p99']:>8.2f}{r['non_2xx']:>8,}{r['cpu_us']:>11,.0f}  {' / '.join(f'{n:,}' for n in r['spread'])}")
    print(f"\nmachine: {os.cpu_count()} cores; load average (1 min) {load_before[0]:.2f} before the runs, "
          f"{load_after[0]:.2f} after (the load generator, this process, shares the cores with the servers)")
    print("RESULTS_JSON " + json.dumps([{"round": r, "concurrency": c, **{k: {"rps": v["rps"], "p99": v["p99"], "cpu_us": v["cpu_us"]}
                                                                         for k, v in row.items()}}
                                        for r, c, row in results]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
