"""Drift benchmark: false alarms, detection per scenario and per single-feature change, a million rows, sampling.

    .venv/bin/python benchmarks/drift.py                 # everything: ~80 minutes on 2 busy cores
    .venv/bin/python benchmarks/drift.py --seeds 5       # quicker, coarser rates
    .venv/bin/python benchmarks/drift.py --sections 3    # only the million-row timing
    .venv/bin/python benchmarks/drift.py --sections 5    # only the single-feature changes (most of the time)

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
5. One feature changed, the rest untouched, at 200 / 1,000 / 10,000 rows, beside stable traffic drawn
   from the same seeds: each numeric feature scaled ×0.5, ×1.3 and ×1.7 (a unit or definition that
   changed upstream), and ``ocean_proximity`` re-coded (two pairs of labels swapped: <1H OCEAN ↔ NEAR
   BAY, INLAND ↔ NEAR OCEAN) or merged (NEAR BAY reported as NEAR OCEAN). Per change: how often the
   check failed and by which rule, and the changed column's score / threshold (for stable, the largest
   over the features). Scaled coordinates leave California, so the server's request rules would refuse
   them before capture: for longitude and latitude this measures the drift check alone.
6. Stable traffic scored by a real network instead of the stand-in line: the tiny model of
   :mod:`housing_platform.devtools.tiny_models` (3 epochs on 3,000 rows of the platform's own split),
   its training rows and their predictions as the reference (as ``registered_model_version`` stores
   them) and its test split as traffic. The stand-in's prediction is a linear function of
   ``median_income``, so in sections 1 and 5 prediction drift can only echo income drift; here the
   prediction rule is measured on its own.
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd

from housing_platform.config.settings import DEFAULT_DATA_PATH
from housing_platform.core import drift as drift_module
from housing_platform.core.drift import DriftConfig, compute_drift
from housing_platform.core.drift_rules import (
    RULE_DATASET_SHARE,
    RULE_KEY_FEATURE,
    RULE_PREDICTION,
    RULE_SEVERE_FEATURE,
    RULES,
)
from housing_platform.core.schema import CATEGORICAL_COLUMN, FEATURE_COLUMNS, NUMERIC_FEATURE_COLUMNS, TARGET_COLUMN
from housing_platform.core.validation import read_housing_csv, validate_housing_frame
from housing_platform.devtools.scenarios import EXPECTED_DETECTION, SCENARIOS, make_scenario

REFERENCE_ROWS = 5_000
MILLION = 1_000_000
SCALE_FACTORS = (0.5, 1.3, 1.7)
SHIFT_SIZES = (200, 1_000, 10_000)
CATEGORY_CHANGES = {
    "re-coded": {"<1H OCEAN": "NEAR BAY", "NEAR BAY": "<1H OCEAN", "INLAND": "NEAR OCEAN", "NEAR OCEAN": "INLAND"},
    "merged": {"NEAR BAY": "NEAR OCEAN"},
}


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


@contextmanager
def shared_noise_floors() -> Iterator[None]:
    """Compute each noise floor once per reference and current non-null counts (sections 1, 2 and 5).

    A column's floor depends only on the reference and on how many non-null values the current table has
    (see ``drift_noise_floor.noise_floors``), so the stable and changed tables drawn from the same rows
    share it: reusing it leaves every verdict identical and saves about a third of the time. Sections 3
    and 4 time ``compute_drift`` and run without it.
    """
    computed, memo = drift_module.noise_floors, {}

    def memoized(reference, current, kinds, *, seed, draws, quantile):
        key = (
            int(pd.util.hash_pandas_object(reference, index=False).sum()),
            tuple(kinds.items()),
            tuple(int(current[column].notna().sum()) for column in kinds),
            seed,
            draws,
            quantile,
        )
        if key not in memo:
            memo[key] = computed(reference, current, kinds, seed=seed, draws=draws, quantile=quantile)
        return memo[key]

    drift_module.noise_floors = memoized
    try:
        yield
    finally:
        drift_module.noise_floors = computed


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
                    "severe feature": f"{sum(bool(r.severe_feature_drift) for r in results)}/{seeds}",
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


def single_feature_changes() -> dict[str, Callable[[pd.DataFrame], pd.DataFrame]]:
    """Change name -> a function changing one column of a table (``stable`` changes nothing)."""
    changes: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {"stable": lambda frame: frame}
    for column in NUMERIC_FEATURE_COLUMNS:
        for factor in SCALE_FACTORS:
            changes[f"{column} ×{factor:g}"] = lambda frame, c=column, f=factor: frame.assign(**{c: frame[c] * f})
    for name, mapping in CATEGORY_CHANGES.items():
        changes[f"{CATEGORICAL_COLUMN} {name}"] = lambda frame, m=mapping: frame.assign(
            **{CATEGORICAL_COLUMN: frame[CATEGORICAL_COLUMN].replace(m)}
        )
    return changes


def _ratio(result, change: str) -> float:
    """The changed column's score / threshold; for stable traffic, the largest over the features."""
    table = result.table.set_index("column")
    ratios = table["score"] / table["threshold"]
    return float(ratios[list(FEATURE_COLUMNS)].max()) if change == "stable" else float(ratios[change.split()[0]])


def single_feature_rates(reference, held_out, predict, sizes, seeds) -> pd.DataFrame:
    """Section 5: per size and change, check failures and the rules behind them, over ``seeds`` draws."""
    rows = []
    for size in sizes:
        bases = [make_scenario(held_out, "stable", size, seed) for seed in range(seeds)]  # shared by all changes
        for change, apply in single_feature_changes().items():
            results = [compute_drift(reference, predict(apply(base))) for base in bases]
            ratios = [_ratio(r, change) for r in results]
            rows.append(
                {
                    "change": change,
                    "rows": size,
                    "check failed": f"{sum(not r.check_passed for r in results)}/{seeds}",
                    **{
                        label: f"{sum(rule in r.rules_fired for r in results)}/{seeds}"
                        for label, rule in (
                            ("dataset share", RULE_DATASET_SHARE),
                            ("key feature", RULE_KEY_FEATURE),
                            ("severe", RULE_SEVERE_FEATURE),
                            ("prediction", RULE_PREDICTION),
                        )
                    },
                    "score/threshold min": min(ratios),
                    "score/threshold max": max(ratios),
                }
            )
        print(f"   ... {size:,} rows done", file=sys.stderr, flush=True)
    return pd.DataFrame(rows)


def print_single_feature_changes(reference, held_out, predict, seeds: int) -> None:
    multiple = DriftConfig().severe_drift_multiple
    print(f"5. One feature changed (severe threshold: {multiple:g}× the column's threshold); stable = false alarms")
    rates = single_feature_rates(reference, held_out, predict, SHIFT_SIZES, seeds)
    failed = rates.pivot(index="change", columns="rows", values="check failed").reindex(rates["change"].unique())
    failed.columns = [f"failed at {size:,} rows" for size in failed.columns]
    print(failed.to_string())
    print()
    print(rates.to_string(index=False))
    print()


def real_network_false_alarms(sizes, seeds) -> pd.DataFrame:
    """Section 6: per size, check failures by rule on stable traffic scored by the tiny model."""
    import shutil

    from housing_platform.devtools.tiny_models import registered_models

    models = registered_models()
    try:
        scorer = models.scorer(models.versions[0])
        reference = models.train.assign(prediction=scorer.score(models.train))
        pool = models.test.reset_index(drop=True)
        rows = []
        for size in sizes:
            results = []
            for seed in range(seeds):
                current = make_scenario(pool, "stable", size, seed)
                results.append(compute_drift(reference, current.assign(prediction=scorer.score(current))))
            ratios = [_ratio(r, "prediction") for r in results]
            rows.append(
                {
                    "rows": size,
                    "check failed": f"{sum(not r.check_passed for r in results)}/{seeds}",
                    **{rule: f"{sum(rule in r.rules_fired for r in results)}/{seeds}" for rule in RULES},
                    "prediction score/threshold median": float(np.median(ratios)),
                    "prediction score/threshold max": max(ratios),
                }
            )
    finally:
        shutil.rmtree(models.root, ignore_errors=True)
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
    parser.add_argument("--sections", default="1,2,3,4,5,6", help="comma-separated table numbers to print")
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
        with shared_noise_floors():
            print_verdicts(reference, held_out, predict, args.seeds)
    if 2 in sections:
        print("2. stable with and without the noise floor")
        with shared_noise_floors():
            rates = stable_without_floor(reference, held_out, predict, (200, 500, 1_000), args.seeds)
        print(rates.to_string(index=False))
        print()
    if 3 in sections:
        print_performance()
    if 4 in sections:
        print("4. Sampled (max_rows=50,000) vs unsampled, same tables")
        print(sampling_evidence(reference, held_out, predict, (100_000, MILLION)).to_string(index=False))
        print()
    if 5 in sections:
        with shared_noise_floors():
            print_single_feature_changes(reference, held_out, predict, args.seeds)
    if 6 in sections:
        print("6. Stable traffic scored by a real network (tiny model, its training rows as the reference)")
        print(real_network_false_alarms(SHIFT_SIZES, args.seeds).to_string(index=False))


if __name__ == "__main__":
    main()
