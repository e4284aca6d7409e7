"""How much capture costs the request path, and how many rows per second the writer sustains.

    .venv/bin/python benchmarks/capture.py [--rows 200000] [--postgres-url URL | --no-postgres]

For each store (a SQLite file in WAL mode; PostgreSQL in a throwaway schema) and batch size:

* ``submit µs/row``: wall time of ``CaptureWriter.submit`` per row, measured while the writer thread
  is busy writing the same rows (so it includes contention for the GIL, as in a server), for
  requests of 1 row and of 20 rows. ``p99 µs/call`` is the 99th percentile of single-row calls.
* ``rows/s``: rows written per second from the first submit until ``flush()`` returns, with a queue
  big enough that nothing is dropped.

Figures are side by side in one run on one machine; compare ratios, not absolutes across machines.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

from housing_platform.adapters.capture.store import CaptureStore
from housing_platform.adapters.capture.writer import CaptureWriter
from housing_platform.devtools.capture_samples import make_records

DEFAULT_POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


def measure(store: CaptureStore, rows: int, batch_size: int) -> dict[str, float]:
    records = make_records(rows)
    writer = CaptureWriter(store, batch_size=batch_size, max_queue_rows=rows + 1)
    per_call: list[float] = []
    started = time.perf_counter()
    # First third one row per call (a single-row request), the rest 20 rows per call (a batch request).
    single = rows // 3
    for record in records[:single]:
        t0 = time.perf_counter()
        writer.submit(record)
        per_call.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(single, rows, 20):
        writer.submit(records[i : i + 20])
    batched_seconds = time.perf_counter() - t0
    if not writer.flush(timeout=600):
        raise RuntimeError(f"writer did not finish: {writer.stats()}")
    elapsed = time.perf_counter() - started
    stats = writer.stats()
    writer.close()
    if stats.written != rows or stats.dropped:
        raise RuntimeError(f"expected {rows} rows written and none dropped, got {stats}")
    if store.count_captures() < rows:
        raise RuntimeError("rows missing from the store")
    per_call.sort()
    return {
        "submit_1": statistics.fmean(per_call) * 1e6,
        "p50_1": per_call[len(per_call) // 2] * 1e6,
        "p99_1": per_call[int(len(per_call) * 0.99)] * 1e6,
        "p999_1": per_call[int(len(per_call) * 0.999)] * 1e6,
        "submit_20": batched_seconds / (rows - single) * 1e6,
        "rows_per_s": rows / elapsed,
    }


def sqlite_store(folder: Path) -> CaptureStore:
    return CaptureStore(f"sqlite:///{folder / f'capture-{uuid.uuid4().hex[:6]}.db'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[100, 500, 2000])
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()

    results: list[tuple[str, int, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="capture-bench-") as folder:
        for batch_size in args.batch_sizes:
            store = sqlite_store(Path(folder))
            results.append(("sqlite (WAL)", batch_size, measure(store, args.rows, batch_size)))
            store.dispose()

    if not args.no_postgres:
        schema = f"capture_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(args.postgres_url, connect_args={"connect_timeout": 3})
        try:
            for batch_size in args.batch_sizes:
                store = CaptureStore(args.postgres_url, schema=f"{schema}_{batch_size}")
                results.append(("postgresql", batch_size, measure(store, args.rows, batch_size)))
                store.dispose()
        finally:
            with admin.begin() as conn:
                for batch_size in args.batch_sizes:
                    conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}_{batch_size}" CASCADE'))
            admin.dispose()

    columns = ("store", "batch", "µs/row 1-row", "p50 µs", "p99 µs", "p99.9 µs", "µs/row 20-row", "rows/s")
    widths = (13, 6, 13, 8, 8, 9, 14, 9)
    header = "".join(f"{c:>{w}}" if i else f"{c:<{w}}" for i, (c, w) in enumerate(zip(columns, widths)))
    print(f"{args.rows} rows per run; submit timed while the writer thread is busy\n{header}\n{'-' * len(header)}")
    for name, batch_size, r in results:
        values = (r["submit_1"], r["p50_1"], r["p99_1"], r["p999_1"], r["submit_20"])
        print(
            f"{name:<13}{batch_size:>6}"
            + "".join(f"{v:>{w}.1f}" for v, w in zip(values, widths[2:]))
            + f"{r['rows_per_s']:>9,.0f}"
        )

if __name__ == "__main__":
    main()
