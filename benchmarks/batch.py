"""Batch scoring throughput: the fast path (``housing_platform.scoring.scorer``) vs the registered pyfunc.

    .venv/bin/python benchmarks/batch.py [--rows 1000000] [--model-uri models:/housing_price_model@champion]
        [--pyfunc-rows 200000]

Rows are real districts resampled with small jitter (all valid), in memory: file reading is not
timed. Measured on the same rows, in one run:

* ``fast path, float64, 1 thread`` — :meth:`FastScorer.score_arrays` as the server runs it;
* ``fast path, float32, 1 thread`` and ``..., N threads`` — the batch configuration
  (:data:`housing_platform.scoring.batch.BATCH_PRECISION`, chunks scored in parallel threads);
* ``score_frame`` — what ``batch_predictions`` and ``housing-platform score`` do end to end in
  memory: rule checks, training-range flags, scoring and the output DataFrame;
* ``registered pyfunc`` — ``mlflow.pyfunc.load_model(...).predict`` (sklearn transform + Keras) on
  ``--pyfunc-rows`` rows, for the ratio.

It also prints the arithmetic that bounds any implementation on this machine: the network's
multiply-adds per row and the measured dense matrix-multiply rate (GFLOP/s), hence the ceiling in
rows/s. The model comes from the state folder, or a throwaway one is built (see benchmarks/serving.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from serving import benchmark_model  # noqa: E402  (benchmarks/serving.py)

from housing_platform.config.settings import DEFAULT_DATA_PATH  # noqa: E402
from housing_platform.core.schema import CATEGORICAL_COLUMN, FEATURE_COLUMNS  # noqa: E402


def districts(rows: int, seed: int = 0) -> pd.DataFrame:
    """``rows`` valid districts: real rows resampled, coordinates and income jittered a little."""
    source = pd.read_csv(DEFAULT_DATA_PATH).dropna()
    rng = np.random.default_rng(seed)
    frame = source.iloc[rng.integers(0, len(source), rows)][list(FEATURE_COLUMNS)].reset_index(drop=True)
    frame["longitude"] = (frame["longitude"] + rng.uniform(-0.01, 0.01, rows)).clip(-124.5, -114.0)
    frame["latitude"] = (frame["latitude"] + rng.uniform(-0.01, 0.01, rows)).clip(32.5, 42.1)
    frame["median_income"] = (frame["median_income"] * rng.uniform(0.98, 1.02, rows)).clip(0.5, 15.9)
    return frame


def best_of(repeats: int, function) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def gemm_gflops(dtype) -> float:
    """Dense matrix-multiply rate of this machine (all cores), GFLOP/s."""
    a = np.random.default_rng(0).random((1_500, 1_500)).astype(dtype)
    seconds = best_of(3, lambda: a @ a)
    return 2 * 1_500**3 / seconds / 1e9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pyfunc-rows", type=int, default=200_000)
    parser.add_argument("--model-uri", default="models:/housing_price_model@champion")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    import mlflow

    from housing_platform.scoring.batch import score_frame
    from housing_platform.scoring.scorer import FastScorer
    from housing_platform.scoring.verification import relative_difference

    model = benchmark_model(args.model_uri)
    print(f"model: {model.note}")
    mlflow.set_tracking_uri(model.tracking_uri)
    pyfunc = mlflow.pyfunc.load_model(model.uri)
    scorer64 = FastScorer.from_python_model(pyfunc.unwrap_python_model(), precision="float64")
    scorer32 = scorer64.with_precision("float32")
    frame = districts(args.rows)
    numeric = scorer64.numeric_matrix(frame)
    codes = scorer64.category_codes(frame[CATEGORICAL_COLUMN])
    n = len(frame)

    sample = frame.head(args.pyfunc_rows)
    expected = np.asarray(pyfunc.predict(sample), dtype=np.float64)
    for scorer in (scorer64, scorer32):
        got = scorer.score_arrays(numeric[: len(sample)], codes[: len(sample)])
        worst = relative_difference(got, expected)
        print(f"{scorer.precision}: agrees with the pyfunc on {len(sample):,} rows to {worst:.2e} (relative)")

    runs = [
        ("fast path, float64, 1 thread", lambda: scorer64.score_arrays(numeric, codes, threads=1)),
        ("fast path, float32, 1 thread", lambda: scorer32.score_arrays(numeric, codes, threads=1)),
        (f"fast path, float64, {args.threads} threads", lambda: scorer64.score_arrays(numeric, codes, threads=args.threads)),
        (f"fast path, float32, {args.threads} threads", lambda: scorer32.score_arrays(numeric, codes, threads=args.threads)),
        (f"score_frame (batch: rules + flags + scoring), float32, {args.threads} threads",
         lambda: score_frame(scorer32, frame, "1", threads=args.threads)),
    ]
    print()
    print(f"{'':62s} {'rows/s':>12s} {'seconds':>9s}")
    results = {}
    for label, run in runs:
        seconds = best_of(2, run)
        results[label] = n / seconds
        print(f"{label:62s} {n / seconds:>12,.0f} {seconds:>9.2f}   ({n:,} rows)")
    seconds = best_of(1, lambda: pyfunc.predict(sample))
    pyfunc_rate = len(sample) / seconds
    label = "registered pyfunc (sklearn + Keras predict)"
    print(f"{label:62s} {pyfunc_rate:>12,.0f} {seconds:>9.2f}   ({len(sample):,} rows)")

    macs = sum(layer.kernel.shape[0] * layer.kernel.shape[1] for layer in scorer64.layers)
    k = len(scorer64.cluster_centers)
    f64, f32 = gemm_gflops(np.float64), gemm_gflops(np.float32)
    best = max(results.values())
    print()
    print(f"network: {' -> '.join(str(layer.kernel.shape[0]) for layer in scorer64.layers)} -> 1; "
          f"{macs:,} multiply-adds = {2 * macs / 1e3:,.0f} kFLOP per row (+ {k} cluster similarities)")
    print(f"this machine's GEMM: {f64:,.1f} GFLOP/s float64, {f32:,.1f} GFLOP/s float32 "
          f"({os.cpu_count()} cores) -> ceiling ~{f64 * 1e9 / (2 * macs):,.0f} rows/s float64, "
          f"~{f32 * 1e9 / (2 * macs):,.0f} rows/s float32 for the dense layers alone")
    print(f"best fast path: {best:,.0f} rows/s = {best / pyfunc_rate:.1f}x the pyfunc; goal 1,000,000 rows/s: "
          f"{'met' if best >= 1_000_000 else 'MISSED'}")
    print(f"load average now: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
