"""Drift benchmark: false alarms, detection per scenario, a million rows, and sampled vs unsampled.

    .venv/bin/python benchmarks/drift.py               # everything: ~9 minutes on 2 idle cores
    .venv/bin/python benchmarks/drift.py --seeds 5     # quicker, coarser rates
    .venv/bin/python benchmarks/drift.py --sections 3  # only the million-row timing

Data: the validated California table, split here by a seeded permutation into 80 % "train" and 20 %
"held-out" (a stand-in for the platform's real split, which lives in ``housing_platform.core.splits``). The
reference is 5,000 train rows; the current traffic is drawn from the disjoint held-out rows by
:func:`housing_platform.devtools.scenarios.make_scenario`. The prediction is a stand-in — a least-squares line
of the price on ``median_income`` fitted on train — computed from the (shifted) features of each table,
as the served model would; :mod:`housing_platform.core.drift` does not care where predictions come from.

Tables printed:

1. Verdicts per scenario and size over ``--seeds`` seeds (``stable`` = false alarms).
2. ``stable`` with the noise floor switched off: why the floor exists.
3. Time and peak memory of ``compute_drift`` on 1,000,000 current rows, measured in a fresh child
   process (so the first call is cold): wall time of the first and second call, the tracemalloc peak
   of a third (tracemalloc slows it, so it is not timed), and the process's peak RSS.
4. Sampled (the default, 50,000 rows) vs unsampled (``max_rows=None``) on the same tables at
   100,000 and 1,000,000 rows: verdicts, flags that differ, and the largest score difference.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
import pandas as pd

from housing_platform.config.settings import DEFAULT_DATA_PATH
from housing_platform.core.drift import DriftConfig, compute_drift
from housing_platform.core.schema import TARGET_COLUMN
from housing_platform.core.validation import read_housing_csv, validate_housing_frame
from housing_platform.devtools.scenarios import EXPECTED_DETECTION, SCENARIOS, make_scenario

REFERENCE_ROWS = 5_000
MILLION = 1_000_000


def load_split(seed: int = 42) -> tuple[pd.DataFrame, pd.DataFrame]:
    valid = validate_housing_frame(read_housing_csv(DEFAULT_DATA_PATH)).valid
    order = np.random.default_rng(seed).permutation(len(valid))
    cut = int(0.8 * len(valid))
    return valid.iloc[order[:cut]].reset_index(drop=True), valid.iloc[order[cut:]].reset_index(drop=True)


def stand_in_predictor(train: pd.DataFrame):
    slope, intercept = np.polyfit(train["median_income"], train[TARGET_COLUMN], 1)
    return lambda frame: frame.assign(prediction=intercept + slope * frame["median_income"])


def setup() -> tuple[pd.DataFrame, pd.DataFrame, Callable[[pd.DataFrame], pd.DataFrame]]:
    train, held_out = load_split()
    predict = stand_in_predictor(train)
    reference = predict(train.sample(REFERENCE_ROWS, random_state=0).reset_index(drop=True))
    return reference, held_out, predict


def verdict_rates(reference, held_out, predict, sizes, seeds, config=None) -> pd.DataFrame:
    rows = []
    for scenario in SCENARIOS:
        for size in sizes:
            results = [
                compute_drift(reference, predict(make_scenario(held_out, scenario, size, seed)), config)
                for seed in range(seeds)
            ]
            rows.append(
                {
                    "scenario": scenario,
                    "rows": size,
                    "verdict=drift": f"{sum(r.verdict == 'drift' for r in results)}/{seeds}",
                    "dataset drift": f"{sum(r.dataset_drift for r in results)}/{seeds}",
                    "key feature": f"{sum(bool(r.key_feature_drift) for r in results)}/{seeds}",
                    "prediction": f"{sum(bool(r.prediction_drift) for r in results)}/{seeds}",
                    "mean drifted share": np.mean([r.drifted_share for r in results]),
                    "income score": np.mean([_score(r, "median_income") for r in results]),
                    "drifted column flags": sum(len(r.drifted_columns) + bool(r.prediction_drift) for r in results),
                }
            )
    return pd.DataFrame(rows)


def stable_without_floor(reference, held_out, predict, sizes, seeds) -> pd.DataFrame:
    rows = []
    for size in sizes:
        for label, config in (("on (default)", DriftConfig()), ("off", DriftConfig(noise_floor_quantile=None))):
            results = [
                compute_drift(reference, predict(make_scenario(held_out, "stable", size, seed)), config)
                for seed in range(seeds)
            ]
            rows.append(
                {
                    "rows": size,
                    "noise floor": label,
                    "false alarms": f"{sum(r.verdict == 'drift' for r in results)}/{seeds}",
                    "drifted column flags": sum(len(r.drifted_columns) + bool(r.prediction_drift) for r in results),
                    "median_income threshold": np.mean([_threshold(r, "median_income") for r in results]),
                }
            )
    return pd.DataFrame(rows)


def sampling_evidence(reference, held_out, predict, sizes) -> pd.DataFrame:
    rows = []
    for size in sizes:
        for scenario in SCENARIOS:
            current = predict(make_scenario(held_out, scenario, size, seed=7))
            started = time.perf_counter()
            sampled = compute_drift(reference, current)
            sampled_seconds = time.perf_counter() - started
            started = time.perf_counter()
            full = compute_drift(reference, current, DriftConfig(max_rows=None))
            full_seconds = time.perf_counter() - started
            both = sampled.table.merge(full.table, on="column", suffixes=("_sampled", "_full"))
            rows.append(
                {
                    "rows": size,
                    "scenario": scenario,
                    "verdict sampled": sampled.verdict,
                    "verdict full": full.verdict,
                    "same": sampled.verdict == full.verdict,
                    "flags differing": int((both["drifted_sampled"] != both["drifted_full"]).sum()),
                    "max |score diff|": float((both["score_sampled"] - both["score_full"]).abs().max()),
                    "min |full score - threshold|": float((both["score_full"] - both["threshold_full"]).abs().min()),
                    "seconds sampled": sampled_seconds,
                    "seconds full": full_seconds,
                }
            )
    return pd.DataFrame(rows)


def performance_child() -> None:
    """Run in a fresh process: time and memory of compute_drift on a million current rows."""
    reference, held_out, predict = setup()
    current = predict(make_scenario(held_out, "stable", MILLION, seed=1))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    figures = {"current_rows": len(current), "current_mib": current.memory_usage(deep=True).sum() / 2**20}
    for call in ("first", "second"):
        started = time.perf_counter()
        result = compute_drift(reference, current)
        figures[f"{call}_call_seconds"] = time.perf_counter() - started
    tracemalloc.start()
    compute_drift(reference, current)
    figures["tracemalloc_peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    figures |= {
        "verdict": result.verdict,
        "compared_current_rows": result.compared_current_rows,
        "process_peak_rss_mib": rss_after / 1024,
        "peak_rss_growth_during_calls_mib": (rss_after - rss_before) / 1024,
        "load_average_after": os.getloadavg()[0],
    }
    print(json.dumps(figures))


def _score(result, column: str) -> float:
    return float(result.table.set_index("column").loc[column, "score"])


def _threshold(result, column: str) -> float:
    return float(result.table.set_index("column").loc[column, "threshold"])


def print_verdicts(reference, held_out, predict, seeds: int) -> None:
    print("1. Verdicts per scenario (stable: false alarms; the others: detections)")
    print(verdict_rates(reference, held_out, predict, (200, 1_000), seeds).to_string(index=False))
    for scenario, how in EXPECTED_DETECTION.items():
        print(f"   {scenario}: expected to be caught by {how}")
    inflated = make_scenario(held_out, "price_inflation", 1_000, 0)[TARGET_COLUMN].mean()
    print(
        f"   price_inflation moves the mean target by x{inflated / held_out[TARGET_COLUMN].mean():.2f} "
        "while the features are unchanged\n"
    )


def print_performance() -> None:
    print("3. compute_drift on 1,000,000 current rows (fresh process; target <= 10 s and <= 2 GiB)")
    child = subprocess.run([sys.executable, __file__, "--perf-child"], check=True, capture_output=True, text=True)
    figures = json.loads(child.stdout.strip().splitlines()[-1])
    for name, value in figures.items():
        print(f"   {name:36s} {value:,.2f}" if isinstance(value, float) else f"   {name:36s} {value}")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--sections", default="1,2,3,4", help="comma-separated table numbers to print")
    parser.add_argument("--perf-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.perf_child:
        performance_child()
        return

    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 20)
    pd.set_option("display.float_format", lambda v: f"{v:.3f}")
    sections = {int(part) for part in args.sections.split(",")}
    reference, held_out, predict = setup()
    print(f"reference: {len(reference):,} train rows; held-out pool: {len(held_out):,} rows; seeds: {args.seeds}")
    # Timings are wall-clock: other processes on the machine slow them down, so say how busy it was.
    print(f"{os.cpu_count()} CPUs; load average at start: {os.getloadavg()[0]:.1f}\n")

    if 1 in sections:
        print_verdicts(reference, held_out, predict, args.seeds)
    if 2 in sections:
        print("2. stable with and without the noise floor")
        print(stable_without_floor(reference, held_out, predict, (200, 500, 1_000), args.seeds).to_string(index=False))
        print()
    if 3 in sections:
        print_performance()
    if 4 in sections:
        print("4. Sampled (max_rows=50,000) vs unsampled, same tables")
        print(sampling_evidence(reference, held_out, predict, (100_000, MILLION)).to_string(index=False))


if __name__ == "__main__":
    main()
