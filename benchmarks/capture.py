"""Can the capture writer keep up with scoring? Rows per second of each, side by side in one run.

    .venv/bin/python benchmarks/capture.py [--rows 200000] [--request-rows 1000] [--batch-rows N]
        [--postgres-url URL | --no-postgres] [--model-uri models:/housing_price_model@champion] [--quick]

* **scoring**: what the server does per predict request of ``--request-rows`` rows, in one thread —
  ``parse_json`` + ``parse_instances`` (the schema's rules) + ``FastScorer.score_arrays`` + ``orjson``
  of the answer — on the registered version behind ``--model-uri`` (a throwaway tiny one is trained
  if the state folder has none).
* **writer, end to end**: rows/s from the first ``submit_deferred`` until ``flush()`` returns, the
  records built in the writer thread exactly as the server's (training-range flags + ``from_columns``),
  each request admitted first, so nothing may be dropped (checked, and counted in the store).
* **writer, insert only**: ``CaptureStore.insert_captures`` of prebuilt records in batches of
  ``--batch-rows`` (the SQLite ``executemany`` / PostgreSQL ``COPY`` bulk paths).
* **submit µs/request**: what the caller (the server's event loop) pays per request.
* **CPU µs/row**: this process's CPU time per row (scoring: its one thread; writer: all threads), which a
  loaded machine changes far less than rows/s.

SQLite is a WAL file in a temporary folder; PostgreSQL a throwaway schema (dropped at the end).
Figures are from one run on one (shared) machine: compare the columns, not absolutes across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from serving import benchmark_model, sample_rows  # noqa: E402  (benchmarks/serving.py)

from housing_platform.adapters.capture.records import CaptureRecord  # noqa: E402
from housing_platform.adapters.capture.store import CaptureStore  # noqa: E402
from housing_platform.adapters.capture.writer import CaptureWriter  # noqa: E402
from housing_platform.core.schema import CATEGORICAL_COLUMN, NUMERIC_FEATURE_COLUMNS  # noqa: E402
from housing_platform.server.requests import parse_instances, parse_json  # noqa: E402
from housing_platform.server.server_config import serving_default  # noqa: E402
from housing_platform.server.state import new_request_ids  # noqa: E402

DEFAULT_POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
_BEDROOMS = NUMERIC_FEATURE_COLUMNS.index("total_bedrooms")


def load_scorer(model_uri: str):
    import mlflow

    from housing_platform.scoring.verification import load_fast_scorer

    model = benchmark_model(model_uri)
    mlflow.set_tracking_uri(model.tracking_uri)
    return load_fast_scorer(model.uri), model.note


def scoring_rate(scorer, body: bytes, requests: int) -> tuple[float, float]:
    """Rows/s of the server's per-request work (parse, validate, score, serialise) in one thread, and
    the CPU µs it costs per row."""
    rows = 0
    cpu = time.process_time()
    started = time.perf_counter()
    for _ in range(requests):
        instances = parse_instances(parse_json(body), 10_000)
        predictions = scorer.score_arrays(instances.numeric, scorer.category_codes(instances.categories))
        ids = new_request_ids(len(instances))
        orjson.dumps({"predictions": predictions, "model_version": "1", "request_ids": ids},
                     option=orjson.OPT_SERIALIZE_NUMPY)
        rows += len(instances)
    return rows / (time.perf_counter() - started), (time.process_time() - cpu) / rows * 1e6


def request_builder(scorer, instances, predictions: list[float]):
    """A function building one request's records as the server's writer thread does (flags, columns)."""
    ids = new_request_ids(len(instances))

    def build() -> list[CaptureRecord]:
        flags = scorer.out_of_range({CATEGORICAL_COLUMN: instances.categories}, numeric=instances.numeric)
        columns = instances.numeric.T.tolist()
        columns[_BEDROOMS] = [None if v != v else v for v in columns[_BEDROOMS]]
        return CaptureRecord.from_columns(ids, datetime.now(UTC), "1", [*columns, instances.categories],
                                          predictions, 1.5, flags)

    return ids, build


def writer_rates(store: CaptureStore, scorer, instances, predictions, rows: int, batch_rows: int | None) -> dict:
    batch_rows = batch_rows or store.preferred_batch_rows
    per_request = len(instances)
    requests = [request_builder(scorer, instances, predictions) for _ in range(rows // per_request)]
    total = len(requests) * per_request
    writer = CaptureWriter(store, batch_size=batch_rows, max_queue_rows=total + 1, buffer_max_rows=total + 1)
    cpu = time.process_time()
    started = time.perf_counter()
    submit_seconds = 0.0
    for ids, build in requests:
        t0 = time.perf_counter()
        assert writer.admit(per_request)
        writer.submit_deferred(ids, build, admitted=per_request)
        submit_seconds += time.perf_counter() - t0
    if not writer.flush(timeout=600):
        raise RuntimeError(f"writer did not finish: {writer.stats()}")
    end_to_end = total / (time.perf_counter() - started)
    cpu_us = (time.process_time() - cpu) / total * 1e6  # every thread of this process: builder, writer, caller
    stats = writer.stats()
    writer.close()
    if stats.written != total or stats.dropped or store.count_captures() != total:
        raise RuntimeError(f"expected {total} rows written and none dropped, got {stats}")

    records = [record for _, build in requests[: max(1, len(requests) // 2)] for record in build()]
    for record_batch in (records[:batch_rows],):  # warm the statement cache
        store.insert_captures([r._replace(request_id=uuid.uuid4().hex) for r in record_batch])
    renamed = [r._replace(request_id=r.request_id + "b") for r in records]  # new ids, built before timing
    started = time.perf_counter()
    for i in range(0, len(renamed), batch_rows):
        store.insert_captures(renamed[i : i + batch_rows])
    insert_only = len(renamed) / (time.perf_counter() - started)
    return {"end_to_end": end_to_end, "insert_only": insert_only, "cpu_us": cpu_us, "batch_rows": batch_rows,
            "submit_us": submit_seconds / len(requests) * 1e6, "rows": total}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--request-rows", type=int, default=1_000)
    parser.add_argument("--batch-rows", type=int, default=serving_default("capture_batch_rows"),
                        help="rows per INSERT/COPY (default: the server's, i.e. the store's preferred_batch_rows)")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--model-uri", default="models:/housing_price_model@champion")
    parser.add_argument("--quick", action="store_true", help="20,000 rows")
    args = parser.parse_args()
    rows = 20_000 if args.quick else args.rows
    # As the server runs (ServerState.start): the writer's threads and the caller hand the GIL over sooner.
    sys.setswitchinterval(serving_default("gil_switch_interval_seconds"))

    scorer, note = load_scorer(args.model_uri)
    print(f"model: {note}")
    body = json.dumps({"instances": sample_rows(args.request_rows)}).encode()
    instances = parse_instances(parse_json(body), 10_000)
    predictions = scorer.score_arrays(instances.numeric, scorer.category_codes(instances.categories)).tolist()
    scoring, scoring_cpu_us = scoring_rate(scorer, body, max(1, rows // args.request_rows))

    results: list[tuple[str, dict]] = []
    with tempfile.TemporaryDirectory(prefix="capture-bench-") as folder:
        with CaptureStore(f"sqlite:///{Path(folder) / 'capture.db'}") as store:
            results.append(("sqlite (WAL)", writer_rates(store, scorer, instances, predictions, rows, args.batch_rows)))
    if not args.no_postgres:
        schema = f"capture_bench_{uuid.uuid4().hex[:8]}"
        store = CaptureStore(args.postgres_url, schema=schema)
        try:
            results.append(("postgresql (COPY)",
                            writer_rates(store, scorer, instances, predictions, rows, args.batch_rows)))
        finally:
            from sqlalchemy import text

            with store.engine.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            store.dispose()

    batches = ", ".join(f"{name} {r['batch_rows']:,}" for name, r in results)
    print(f"\n{rows:,} rows in requests of {args.request_rows:,}; rows per INSERT/COPY: {batches}; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    print(f"{'':34s}{'rows/s':>12s}{'vs scoring':>12s}{'submit µs/request':>19s}{'CPU µs/row':>12s}")
    print(f"{'scoring (parse+rules+score+json)':34s}{scoring:>12,.0f}{1.0:>11.2f}x{'':>19s}{scoring_cpu_us:>12.2f}")
    for name, r in results:
        print(f"{name + ', writer end to end':34s}{r['end_to_end']:>12,.0f}{r['end_to_end'] / scoring:>11.2f}x"
              f"{r['submit_us']:>19.1f}{r['cpu_us']:>12.2f}")
        print(f"{name + ', insert only':34s}{r['insert_only']:>12,.0f}{r['insert_only'] / scoring:>11.2f}x")
    print("CPU µs/row: this process's CPU time (all its threads) per row; a PostgreSQL server's own work is in its "
          "processes, not counted. Unlike rows/s it hardly moves with the load of other processes.")
    goal = all(r["end_to_end"] >= 100_000 for _, r in results)
    keeps_up = all(r["end_to_end"] >= scoring for _, r in results)
    print(f"goals: writer >= 100k rows/s: {'met' if goal else 'MISSED'}; writer >= scoring: "
          f"{'met' if keeps_up else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
