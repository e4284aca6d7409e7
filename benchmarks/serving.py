"""Our model server vs ``mlflow models serve``: the same registered version, side by side in one run.

    .venv/bin/python benchmarks/serving.py [--model-uri models:/housing_price_model@champion]
        [--requests 2000] [--mlflow-requests 1000] [--seconds 10] [--large-requests 50]

The servers run on loopback as separate processes with one worker each: ours is
``housing-platform serve`` (capture ON at 100 %, written to a throwaway SQLite store, as in
production) and, for reference, the same with capture off (``--capture-sample-percent 0``; skip it
with ``--no-capture-off``); MLflow's is ``mlflow models serve --env-manager local`` on the same
version, i.e. the registered pyfunc (sklearn transformer + Keras) behind MLflow's FastAPI scoring
server. The ratio column compares ours *with* capture to MLflow's.

Measured, for each server:

* **single-row latency at concurrency 1**: p50 / p95 / p99 over ``--requests`` sequential requests
  (after 200 warm-up requests), timed client-side around a raw keep-alive socket (a minimal HTTP/1.1
  client, so the client adds microseconds, not the ~0.3 ms of an httpx call);
* **requests/s at concurrency 8**: single-row requests for ``--seconds`` from this script's asyncio
  load generator (8 keep-alive connections, in this process — not the servers'). Non-2xx answers are
  counted and reported;
* **1,000-row request latency**: p50 / p95 over ``--large-requests`` sequential requests;
* **sustained runs** (ours, capture on and off): single-row requests for ``--sustained-seconds``
  (15) at concurrency 1 and 8 from ``load.py``'s asyncio generator, p50 / p90 / p99 side by side
  (alone, without MLflow's server: ``--sustained-only``);
* **overload runs** (``--overload``, or alone with ``--overload-only``): a fresh server each,
  100-row requests from 1 client and 1,000-row requests from 2 clients for ``--overload-seconds``,
  ended by SIGTERM and by ``kill -9`` while requests are in flight; answered (200) / refused (503) /
  captured rows, from the store after the process is gone. Lost = answered rows not in the store:
  0 with SIGTERM; with ``kill -9`` at most ``capture_queue_rows`` (the rows in memory). Each run in both
  ``capture_overflow`` modes (``--overflow``): ``backpressure`` refuses with 503 at the bound, ``spill``
  answers 200 and appends to the spill folder; its runs start the server again afterwards (which drains
  the spill at start) before counting.

``--quick`` shortens everything (the overload smoke test runs ``--overload-only --quick``: one
SIGTERM run of a few seconds, and prints its result as a JSON line).

The two servers' predictions for the same 1,000 rows are compared first (same version → same
numbers, to 1e-5). If the state folder has no version behind ``--model-uri``, a throwaway registry
with a freshly trained small model is built first (``housing_platform.devtools.tiny_models``).
The load generator shares the machine's cores with the server: compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from housing_platform.config.settings import DEFAULT_DATA_PATH, HousingSettings  # noqa: E402
from housing_platform.core.schema import FEATURE_COLUMNS  # noqa: E402
from housing_platform.devtools.processes import free_port, http_ok, wait_until  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import load  # noqa: E402  (benchmarks/load.py)

# -- which model ---------------------------------------------------------------------------------


@dataclass
class BenchmarkModel:
    name: str
    version: str
    tracking_uri: str
    artifact_root: str
    note: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    def env(self) -> dict[str, str]:
        return {"MLFLOW_TRACKING_URI": self.tracking_uri, "HOUSING_MLFLOW_ARTIFACT_ROOT": self.artifact_root}


def benchmark_model(model_uri: str) -> BenchmarkModel:
    """The version behind ``model_uri`` in the state folder, or a freshly built throwaway one."""
    from housing_platform.adapters.mlflow_registry import ModelRegistry
    from housing_platform.adapters.model_uri import ModelReference, resolve_version
    from housing_platform.scoring.errors import ScoringError

    settings = HousingSettings.from_env()
    reference = ModelReference.parse(model_uri)
    tracking = settings.mlflow_tracking_uri
    if not tracking.startswith("sqlite:///") or Path(tracking.removeprefix("sqlite:///")).exists():
        registry = ModelRegistry(settings.mlflow_tracking_uri, settings.mlflow_artifact_root, model_name=reference.name)
        try:
            version = resolve_version(registry, reference)
            return BenchmarkModel(reference.name, version, settings.mlflow_tracking_uri, settings.mlflow_artifact_root,
                                  f"{model_uri} -> version {version} from {settings.mlflow_tracking_uri}")
        except ScoringError:
            pass
    print(f"no version behind {model_uri} in {settings.home}: building a throwaway one (~30 s)...", flush=True)
    from housing_platform.devtools.tiny_models import registered_models

    built = registered_models()
    return BenchmarkModel(built.model_name, built.versions[0], built.tracking_uri, built.artifact_root,
                          f"throwaway version {built.versions[0]} (default architecture, {built.train.shape[0]} train rows)")


def sample_rows(n: int) -> list[dict]:
    import pandas as pd

    frame = pd.read_csv(DEFAULT_DATA_PATH).dropna().head(n)
    return json.loads(frame[list(FEATURE_COLUMNS)].to_json(orient="records"))


# -- a minimal HTTP/1.1 keep-alive client ---------------------------------------------------------


def http_request(host: str, port: int, path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    ).encode() + body


_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


class RawClient:
    """One keep-alive connection; ``call`` sends a prebuilt request and reads one response."""

    def __init__(self, host: str, port: int):
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def call(self, request: bytes) -> tuple[int, bytes]:
        self.sock.sendall(request)
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            buffer += chunk
        head, body = buffer.split(b"\r\n\r\n", 1)
        match = _LENGTH.search(head)
        if match is None:
            raise ValueError(f"response without Content-Length: {head[:200]!r}")
        length = int(match.group(1))
        while len(body) < length:
            chunk = self.sock.recv(max(65536, length - len(body)))
            if not chunk:
                raise ConnectionError("server closed the connection mid-body")
            body += chunk
        return int(head.split(b" ", 2)[1]), body

    def close(self) -> None:
        self.sock.close()


def latencies(host: str, port: int, path: str, body: bytes, count: int, warmup: int) -> list[float]:
    client = RawClient(host, port)
    request = http_request(host, port, path, body)
    try:
        for _ in range(warmup):
            status, text = client.call(request)
            if status != 200:
                raise RuntimeError(f"{path} answered {status}: {text[:300]!r}")
        out = []
        for _ in range(count):
            started = time.perf_counter()
            status, _ = client.call(request)
            out.append(time.perf_counter() - started)
            if status != 200:
                raise RuntimeError(f"{path} answered {status}")
        return out
    finally:
        client.close()


def percentile_ms(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000.0


# -- load at concurrency 8 ------------------------------------------------------------------------


async def _asyncio_worker(host: str, port: int, request: bytes, deadline: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            match = _LENGTH.search(head)
            await reader.readexactly(int(match.group(1)))
            counts[0 if head.split(b" ", 2)[1] == b"200" else 1] += 1
    finally:
        writer.close()


def asyncio_throughput(host: str, port: int, path: str, body: bytes, seconds: int, connections: int) -> dict:
    request = http_request(host, port, path, body)
    counts = [0, 0]

    async def run() -> float:
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(*(_asyncio_worker(host, port, request, deadline, counts) for _ in range(connections)))
        return time.perf_counter() - started

    elapsed = asyncio.run(run())
    return {"rps": (counts[0] + counts[1]) / elapsed, "non_2xx": counts[1], "socket_errors": "",
            "tool": f"asyncio load generator ({connections} connections, benchmark process)"}


def throughput(host: str, port: int, path: str, body: bytes, seconds: int, connections: int = 8) -> dict:
    return asyncio_throughput(host, port, path, body, seconds, connections)


# -- the servers ----------------------------------------------------------------------------------


def start_servers(model: BenchmarkModel, workdir: Path, capture_off_too: bool,
                  mlflow_too: bool = True) -> tuple[dict, list[subprocess.Popen]]:
    env = dict(os.environ) | model.env() | {
        "HOUSING_HOME": str(workdir / "state"),
        "HOUSING_CAPTURE_URL": f"sqlite:///{workdir / 'capture.db'}",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        # `mlflow models serve` runs `uvicorn` from PATH: the virtualenv's.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    log = (workdir / "servers.log").open("w")
    servers: dict[str, dict] = {}
    processes: list[subprocess.Popen] = []

    def ours(name: str, sample_percent: int) -> None:
        port = free_port()
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "housing_platform.cli.main", "serve", "--model-uri", model.uri, "--port", str(port),
             "--poll-interval-seconds", "0", "--capture-sample-percent", str(sample_percent), "--log-level", "warning"],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
        ))
        servers[name] = {"port": port, "path": "/v1/predict", "key": "instances", "ready": "/ready",
                         "process": processes[-1]}

    ours("ours", 100)
    if capture_off_too:
        ours("ours, capture off", 0)
    if mlflow_too:
        mlflow_server(model, workdir, env, log, servers, processes)
    _wait_ready(servers, processes)
    return servers, processes


def mlflow_server(model: BenchmarkModel, workdir: Path, env: dict, log, servers: dict, processes: list) -> None:
    port = free_port()
    processes.append(subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "models", "serve", "-m", model.uri, "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
    ))
    servers["mlflow"] = {"port": port, "path": "/invocations", "key": "dataframe_records", "ready": "/ping",
                         "process": processes[-1]}


def _wait_ready(servers: dict, processes: list[subprocess.Popen]) -> None:
    try:
        for server in servers.values():
            url = f"http://127.0.0.1:{server['port']}{server['ready']}"
            wait_until(http_ok(url), what=url, timeout_seconds=300.0, process=server["process"])
    except BaseException:
        stop(processes)
        raise


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def serve_ours(model: BenchmarkModel, workdir: Path, capture_url: str, log, sample_percent: int = 100,
               overflow: str = "backpressure") -> tuple[int, subprocess.Popen]:
    """One `housing-platform serve` process of ours on a free port, ready."""
    env = dict(os.environ) | model.env() | {"HOUSING_HOME": str(workdir / "state"), "HOUSING_CAPTURE_URL": capture_url,
                                            "TF_CPP_MIN_LOG_LEVEL": "2"}
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "housing_platform.cli.main", "serve", "--model-uri", model.uri, "--port", str(port),
         "--poll-interval-seconds", "0", "--capture-sample-percent", str(sample_percent), "--log-level", "warning",
         "--capture-overflow", overflow],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
    )
    try:
        wait_until(http_ok(f"http://127.0.0.1:{port}/ready"), what="our server", timeout_seconds=300.0, process=process)
    except BaseException:
        stop([process])
        raise
    return port, process


def spill_bytes(run_dir: Path) -> int:
    """Bytes waiting in the run's spill folder (the server's default: ``<HOUSING_HOME>/capture/spill``)."""
    folder = run_dir / "state" / "capture" / "spill"
    return sum(f.stat().st_size for f in folder.glob("*") if f.is_file()) if folder.exists() else 0


def restart_to_drain(model: BenchmarkModel, run_dir: Path, capture_url: str, log, timeout: float = 120.0) -> float:
    """Spill mode: start the server again on the same state folder (it drains the spill at start), wait until
    the spill folder is empty, stop it with SIGTERM; returns the seconds the drain took."""
    started = time.perf_counter()
    _, process = serve_ours(model, run_dir, capture_url, log, overflow="spill")
    try:
        while spill_bytes(run_dir) and time.perf_counter() - started < timeout:
            time.sleep(0.2)
    finally:
        stop([process])
    return time.perf_counter() - started


def overload_runs(model: BenchmarkModel, workdir: Path, scenarios, seconds: float) -> list[dict]:
    """Each scenario on a fresh server and capture store: answered / refused / captured / lost rows. In spill
    mode the rows spilled to disk reach the store when the server starts again (a restart is part of the run)."""
    from housing_platform.adapters.capture.store import CaptureStore
    from housing_platform.server.server_config import serving_default

    results = []
    for rows, clients, sig, overflow in scenarios:
        run_dir = workdir / f"overload-{rows}x{clients}-{sig.name}-{overflow}"
        run_dir.mkdir(parents=True)
        capture_url = f"sqlite:///{run_dir / 'capture.db'}"
        spilled, drain_seconds = 0, 0.0
        with (run_dir / "server.log").open("w") as log:
            port, process = serve_ours(model, run_dir, capture_url, log, overflow=overflow)
            try:
                outcome = load.overload(process, "127.0.0.1", port, json.dumps({"instances": sample_rows(rows)}).encode(),
                                        clients, seconds, sig)
            finally:
                stop([process])
            spilled = spill_bytes(run_dir)
            if overflow == "spill" and spilled:
                drain_seconds = restart_to_drain(model, run_dir, capture_url, log)
        with CaptureStore(capture_url) as store:
            stored = set(store.read_captures()["request_id"])
        answered = set(outcome.request_ids)
        results.append({
            "scenario": f"{rows:,}-row x {clients} client{'s' if clients > 1 else ''}, {sig.name}",
            "overflow": overflow, "spill_bytes_left": spilled, "drain_seconds": drain_seconds,
            "signal": sig.name, "answered": len(answered), "captured": len(answered & stored),
            "lost": len(answered - stored), "refused_requests": outcome.statuses.get(503, 0),
            "refused_rows": outcome.statuses.get(503, 0) * rows, "server_errors": outcome.server_errors,
            "stored_not_seen": len(stored - answered), "exit_code": process.returncode,
            "rows_per_s": len(answered) / outcome.seconds, "seconds": outcome.seconds,
            "window_rows": serving_default("capture_queue_rows"),
        })
    return results


def print_overload(results: list[dict]) -> None:
    print(f"\n{'overload run':36s}{'overflow':>14s}{'answered':>10s}{'captured':>10s}{'lost':>7s}{'refused (503)':>15s}"
          f"{'rows/s':>9s}{'exit':>6s}{'spilled, drained':>22s}")
    for r in results:
        spill = (f"{r['spill_bytes_left'] / 1e6:,.1f} MB in {r['drain_seconds']:.1f} s" if r["spill_bytes_left"]
                 else "-")
        print(f"{r['scenario']:36s}{r['overflow']:>14s}{r['answered']:>10,}{r['captured']:>10,}{r['lost']:>7,}"
              f"{r['refused_requests']:>7,} req{r['refused_rows']:>5,}{r['rows_per_s']:>9,.0f}{r['exit_code']:>6}"
              f"{spill:>22s}")
    ok = all(r["lost"] == 0 for r in results if r["signal"] == "SIGTERM") and all(
        r["lost"] <= r["window_rows"] for r in results)
    print(f"lost with SIGTERM must be 0, with kill -9 at most capture_queue_rows "
          f"({results[0]['window_rows']:,} rows): {'met' if ok else 'MISSED'}")
    spill = [r for r in results if r["overflow"] == "spill"]
    if spill:
        print(f"spill mode refuses nothing (503s: {sum(r['refused_requests'] for r in spill):,}): "
              f"{'met' if all(r['refused_requests'] == 0 for r in spill) else 'MISSED'}")


def sustained_table(servers: dict, seconds: float, one: list[dict]) -> None:
    """Single-row requests at concurrency 1 and 8, capture on and off side by side."""
    host, table = "127.0.0.1", {}
    for name in ("ours", "ours, capture off"):
        if name in servers:
            for connections in (1, 8):
                print(f"{name}: sustained, concurrency {connections}, {seconds:g} s ...", flush=True)
                table[name, connections] = load.sustained(host, servers[name]["port"], "/v1/predict",
                                                          body_for(servers[name], one), seconds, connections)
    print(f"\n{'sustained single-row, ' + format(seconds, 'g') + ' s':34s}{'p50 ms':>9s}{'p90 ms':>9s}{'p99 ms':>9s}"
          f"{'req/s':>9s}{'non-2xx':>9s}")
    for (name, connections), r in table.items():
        non_2xx = r.requests - len(r.latencies)
        print(f"{name + ', c=' + str(connections):34s}{r.percentile_ms(50):>9.3f}{r.percentile_ms(90):>9.3f}"
              f"{r.percentile_ms(99):>9.3f}{r.rps:>9,.0f}{non_2xx:>9,}")
    for connections in (1, 8):
        if ("ours, capture off", connections) in table:
            on, off = table["ours", connections], table["ours, capture off", connections]
            ratio = on.percentile_ms(99) / off.percentile_ms(99)
            print(f"c={connections}: p99 capture on / off = {ratio:.2f}x (goal <= 2x: {'met' if ratio <= 2 else 'MISSED'})")


def body_for(server: dict, rows: list[dict]) -> bytes:
    return json.dumps({server["key"]: rows}).encode()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-uri", default="models:/housing_price_model@champion")
    parser.add_argument("--requests", type=int, default=2_000, help="single-row requests timed for our server")
    parser.add_argument("--mlflow-requests", type=int, default=1_000, help="single-row requests timed for MLflow's")
    parser.add_argument("--seconds", type=int, default=10, help="duration of each concurrency-8 run")
    parser.add_argument("--large-requests", type=int, default=50, help="1,000-row requests timed per server")
    parser.add_argument("--sustained-seconds", type=float, default=15.0, help="each sustained run (c=1, c=8)")
    parser.add_argument("--overload", action="store_true", help="also the overload runs (a fresh server each)")
    parser.add_argument("--overload-only", action="store_true", help="only the overload runs")
    parser.add_argument("--overload-seconds", type=float, default=10.0, help="traffic before each signal")
    parser.add_argument("--overflow", choices=("backpressure", "spill", "both"), default="both",
                        help="the capture_overflow mode(s) of the overload runs (spill runs restart the server to "
                        "drain the spill before counting)")
    parser.add_argument("--quick", action="store_true", help="short runs (the smoke test's mode)")
    parser.add_argument("--sustained-only", action="store_true",
                        help="only the sustained runs (ours, capture on and off; no MLflow server)")
    parser.add_argument("--no-capture-off", action="store_true",
                        help="skip the third server (ours with capture off, which shows what capture costs)")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.mlflow_requests, args.seconds, args.large_requests = 300, 100, 2, 10
        args.sustained_seconds, args.overload_seconds = 3.0, 3.0

    model = benchmark_model(args.model_uri)
    print(f"model: {model.note}")
    workdir = Path(tempfile.mkdtemp(prefix="serving_benchmark_"))
    if args.overload or args.overload_only:
        import signal

        modes = ("backpressure", "spill") if args.overflow == "both" else (args.overflow,)
        scenarios = [(100, 1, signal.SIGTERM, modes[0])] if args.quick and args.overload_only else [
            (rows, clients, sig, mode) for mode in modes for rows, clients in ((100, 1), (1_000, 2))
            for sig in (signal.SIGTERM, signal.SIGKILL)]
        overload = overload_runs(model, workdir, scenarios, args.overload_seconds)
        print_overload(overload)
        print("OVERLOAD_JSON " + json.dumps(overload))
        if args.overload_only:
            return 0
    if args.sustained_only:
        servers, processes = start_servers(model, workdir, capture_off_too=True, mlflow_too=False)
        try:
            sustained_table(servers, args.sustained_seconds, sample_rows(1))
        finally:
            stop(processes)
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the end (the load generator "
              "shares the cores)")
        return 0
    servers, processes = start_servers(model, workdir, capture_off_too=not args.no_capture_off)
    host = "127.0.0.1"
    try:
        one, thousand = sample_rows(1), sample_rows(1_000)
        answers = {}
        for name, server in servers.items():
            status, text = RawClient(host, server["port"]).call(http_request(host, server["port"], server["path"],
                                                                           body_for(server, thousand)))
            if status != 200:
                raise RuntimeError(f"{name} answered {status}: {text[:300]!r}")
            answers[name] = np.asarray(json.loads(text)["predictions"], dtype=np.float64).reshape(-1)
        worst = max(float(np.max(np.abs(answers[name] - answers["mlflow"]) / np.abs(answers["mlflow"])))
                    for name in answers if name != "mlflow")
        print(f"same 1,000 rows: predictions agree to {worst:.2e} (relative)")

        results: dict[str, dict] = {}
        for name, server in servers.items():
            count = args.mlflow_requests if name == "mlflow" else args.requests
            print(f"{name}: {count} single-row requests at concurrency 1 ...", flush=True)
            single = latencies(host, server["port"], server["path"], body_for(server, one), count, warmup=200)
            print(f"{name}: concurrency 8 for {args.seconds} s ...", flush=True)
            load = throughput(host, server["port"], server["path"], body_for(server, one), args.seconds)
            print(f"{name}: {args.large_requests} requests of 1,000 rows ...", flush=True)
            large = latencies(host, server["port"], server["path"], body_for(server, thousand), args.large_requests,
                              warmup=5)
            results[name] = {
                "requests": count,
                "p50": percentile_ms(single, 50), "p95": percentile_ms(single, 95), "p99": percentile_ms(single, 99),
                "mean": statistics.fmean(single) * 1000,
                "rps": load["rps"], "non_2xx": load["non_2xx"], "socket_errors": load["socket_errors"],
                "tool": load["tool"],
                "large_p50": percentile_ms(large, 50), "large_p95": percentile_ms(large, 95),
            }
        sustained_table(servers, args.sustained_seconds, one)
    finally:
        stop(processes)

    ours, theirs = results["ours"], results["mlflow"]
    names = list(results)
    rows = [
        ("single row p50, c=1 (ms)", "p50", "{:.3f}", False),
        ("single row p95, c=1 (ms)", "p95", "{:.3f}", False),
        ("single row p99, c=1 (ms)", "p99", "{:.3f}", False),
        ("single row mean, c=1 (ms)", "mean", "{:.3f}", False),
        ("requests/s, c=8", "rps", "{:,.0f}", True),
        ("1,000-row request p50 (ms)", "large_p50", "{:.2f}", False),
        ("1,000-row request p95 (ms)", "large_p95", "{:.2f}", False),
    ]
    print()
    header = f"{'metric':30s}" + "".join(f"{name:>20s}" for name in names) + f"{'ours vs mlflow':>16s}"
    print(header)
    print("-" * len(header))
    for label, key, fmt, higher_better in rows:
        ratio = ours[key] / theirs[key] if higher_better else theirs[key] / ours[key]
        cells = "".join(f"{fmt.format(results[name][key]):>20s}" for name in names)
        print(f"{label:30s}{cells}{ratio:>15.1f}x")
    print("-" * len(header))
    print("timed single-row requests: " + ", ".join(f"{name} {results[name]['requests']:,}" for name in names)
          + " (after 200 warm-up)")
    print(f"load generator: {ours['tool']}; non-2xx: " + ", ".join(f"{n} {results[n]['non_2xx']}" for n in names)
          + (f"; {ours['socket_errors']}" if ours["socket_errors"] else ""))
    print(f"goals (ours, capture on): p50 <= 1 ms: {'met' if ours['p50'] <= 1 else 'MISSED'}; p99 <= 5 ms: "
          f"{'met' if ours['p99'] <= 5 else 'MISSED'}; >= 10x mlflow throughput: "
          f"{'met' if ours['rps'] >= 10 * theirs['rps'] else 'MISSED'}")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the end (the load generator "
          "shares the cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
