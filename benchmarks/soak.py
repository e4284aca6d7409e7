"""Soak: one server of ours under sustained load at high concurrency, watching for 5xx and memory growth.

    .venv/bin/python benchmarks/soak.py [--seconds 60] [--connections 64] [--rows 1]
        [--model-uri models:/housing_price_model@champion] [--quick]

``housing-platform serve`` (capture on at 100 %, a throwaway SQLite store) on loopback; ``--connections``
closed-loop keep-alive clients (``load.py``) send ``--rows``-row predict requests for ``--seconds``.
Reported: requests/s, p50/p99 latency, status counts, the server's RSS (from /proc) at the start of
the load and at its end, and the rows captured vs answered after a SIGTERM. Goal: zero 5xx other than
capture's 503 backpressure (which a client retries) and every answered row captured.
``--quick``: 5 s at 16 connections.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import load  # noqa: E402  (benchmarks/load.py)
from serving import benchmark_model, sample_rows, serve_ours, stop  # noqa: E402  (benchmarks/serving.py)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rows", type=int, default=1)
    parser.add_argument("--model-uri", default="models:/housing_price_model@champion")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.connections = 5.0, 16

    from housing_platform.adapters.capture.store import CaptureStore

    model = benchmark_model(args.model_uri)
    print(f"model: {model.note}")
    workdir = Path(tempfile.mkdtemp(prefix="soak_"))
    capture_url = f"sqlite:///{workdir / 'capture.db'}"
    body = json.dumps({"instances": sample_rows(args.rows)}).encode()
    samples: list[float] = []
    with (workdir / "server.log").open("w") as log:
        port, process = serve_ours(model, workdir, capture_url, log)
        try:
            start_rss = rss_mib(process.pid)
            done = threading.Event()

            def sample_rss() -> None:
                while not done.wait(1.0):
                    samples.append(rss_mib(process.pid))

            sampler = threading.Thread(target=sample_rss, daemon=True)
            sampler.start()
            print(f"{args.connections} connections, {args.rows}-row requests, {args.seconds:g} s ...", flush=True)
            result = load.sustained("127.0.0.1", port, "/v1/predict", body, args.seconds, args.connections,
                                    collect_ids=True)
            done.set()
            end_rss = rss_mib(process.pid)
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=120)
        finally:
            stop([process])
    with CaptureStore(capture_url) as store:
        stored = set(store.read_captures()["request_id"])
    answered = set(result.request_ids)
    five_xx = sum(n for status, n in result.statuses.items() if status >= 500)
    print(f"\nrequests/s {result.rps:,.0f}  p50 {result.percentile_ms(50):.2f} ms  p99 {result.percentile_ms(99):.2f} ms  "
          f"statuses {dict(sorted(result.statuses.items()))}  connection errors {result.errors}")
    print(f"server RSS: {start_rss:.0f} MiB at the start of the load, {end_rss:.0f} MiB at its end "
          f"(max {max(samples, default=end_rss):.0f} MiB)")
    print(f"captured {len(answered & stored):,} of {len(answered):,} answered rows; exit code {code}")
    ok = five_xx == 0 and result.errors == 0 and answered <= stored
    print(f"goal (zero 5xx, no connection error, every answered row captured): {'met' if ok else 'MISSED'}; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
