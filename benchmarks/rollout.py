"""What a challenger costs the server: champion only vs shadow vs canary, side by side in one run.

    .venv/bin/python benchmarks/rollout.py [--requests 2000] [--rounds 3] [--seconds 8] [--share 0.5]

Three `housing-platform serve` processes on loopback, each following `champion` of its own copy of the
tiny registered models (``devtools/tiny_models.py``: version 1 champion, version 2 a second version), with
capture ON at 100 % to a throwaway SQLite store, as in production:

* **champion only** — no challenger;
* **shadow** — version 2 is `challenger` with ``rollout=shadow``: it scores a copy of every row with the
  capture, after the response;
* **canary** — version 2 is `challenger` with ``rollout=canary`` and ``--share`` (0.5: half the rows; either
  model scores a row, so the cost is the routing hash and the split).

Measured per server: single-row latency at concurrency 1 (p50 / p99, client-side, a raw keep-alive
socket), interleaved in ``--rounds`` rounds of ``--requests`` so the load of other processes on the
machine falls on all three alike (the median over rounds is printed), and single-row requests/s at
concurrency 8 for ``--seconds`` (wrk when installed, else an asyncio generator). Ratios are against
champion only. The goal (issue 14): shadow keeps single-row p50 ≤ 1 ms and throughput above half.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import serving  # noqa: E402  (benchmarks/serving.py: raw client, throughput, stop)

from housing_platform.devtools.processes import free_port, http_ok, wait_until  # noqa: E402

CONFIGS = ("champion only", "shadow", "canary")


def prepare_registry(built, folder: Path, mode: str | None, share: float) -> dict[str, str]:
    """A copy of the tiny registry with version 2 as challenger in ``mode`` (None: no challenger)."""
    from housing_platform.adapters.alias_moves import start_rollout
    from housing_platform.adapters.mlflow_registry import ModelRegistry

    shutil.copytree(built.root / "mlflow", folder / "mlflow")
    tracking, artifacts = f"sqlite:///{folder / 'mlflow' / 'mlflow.db'}", (folder / "mlflow" / "artifacts").as_uri()
    registry = ModelRegistry(tracking, artifacts)
    registry.promote(built.versions[0])
    if mode is not None:
        start_rollout(registry, built.versions[1], mode, share, "benchmark", "benchmarks/rollout.py")
    return {"MLFLOW_TRACKING_URI": tracking, "HOUSING_MLFLOW_ARTIFACT_ROOT": artifacts}


def start(name: str, env: dict[str, str], folder: Path, log) -> tuple[int, subprocess.Popen]:
    port = free_port()
    full = dict(os.environ) | env | {"HOUSING_HOME": str(folder / "state"),
                                     "HOUSING_CAPTURE_URL": f"sqlite:///{folder / 'capture.db'}",
                                     "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(
        [sys.executable, "-m", "housing_platform.cli.main", "serve", "--model-uri",
         "models:/housing_price_model@champion", "--port", str(port), "--poll-interval-seconds", "0",
         "--capture-sample-percent", "100", "--log-level", "warning"],
        env=full, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
    )
    expect = {"champion only": None, "shadow": "shadow", "canary": "canary"}[name]

    def ready() -> bool:
        if not http_ok(f"http://127.0.0.1:{port}/ready")():
            return False
        import httpx

        return httpx.get(f"http://127.0.0.1:{port}/ready").json().get("rollout") == expect

    wait_until(ready, what=f"{name} server", timeout_seconds=300.0, process=process)
    return port, process


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--share", type=float, default=0.5)
    args = parser.parse_args()

    from housing_platform.devtools.tiny_models import registered_models

    print("building the tiny registered models (~30 s)...", flush=True)
    built = registered_models()
    body = json.dumps({"instances": serving.sample_rows(1)}).encode()
    work = Path(tempfile.mkdtemp(prefix="rollout_bench_"))
    log = (work / "servers.log").open("w")
    processes, ports = [], {}
    try:
        for name, mode in zip(CONFIGS, (None, "shadow", "canary")):
            folder = work / name.replace(" ", "_")
            folder.mkdir()
            ports[name], process = start(name, prepare_registry(built, folder, mode, args.share), folder, log)
            processes.append(process)
        p50s: dict[str, list[float]] = {name: [] for name in CONFIGS}
        p99s: dict[str, list[float]] = {name: [] for name in CONFIGS}
        for _ in range(args.rounds):
            for name in CONFIGS:
                values = serving.latencies("127.0.0.1", ports[name], "/v1/predict", body, args.requests, warmup=200)
                p50s[name].append(serving.percentile_ms(values, 50))
                p99s[name].append(serving.percentile_ms(values, 99))
        rates = {name: serving.throughput("127.0.0.1", ports[name], "/v1/predict", body, args.seconds)
                 for name in CONFIGS}
    finally:
        serving.stop(processes)
        log.close()
    print(f"load average (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}; canary share {args.share:g}")
    print(f"{'server':<15} {'p50 ms':>8} {'p99 ms':>8} {'req/s c=8':>10} {'p50 ratio':>10} {'req/s ratio':>12}")
    base_p50 = float(np.median(p50s[CONFIGS[0]]))
    base_rate = rates[CONFIGS[0]]["rps"]
    for name in CONFIGS:
        p50, p99 = float(np.median(p50s[name])), float(np.median(p99s[name]))
        rate = rates[name]["rps"]
        print(f"{name:<15} {p50:>8.3f} {p99:>8.3f} {rate:>10,.0f} {p50 / base_p50:>10.2f} {rate / base_rate:>12.2f}")
    print(f"(throughput by {rates[CONFIGS[0]].get('tool', 'asyncio')}; p50/p99: median over {args.rounds} interleaved "
          f"rounds of {args.requests:,} sequential single-row requests)")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
