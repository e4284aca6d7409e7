"""Model quality benchmark: the default pipeline and its rivals side by side on the same split, in one run.

Loads ``data/california_housing.csv``, validates it, splits it by row hash and, on the same test rows,
prints the test RMSE and the training seconds of:

* the default Keras network (default :class:`TrainingConfig`, default transformer: neighbourhood
  prices included, out of fold for the train rows);
* the same network without the neighbourhood block (``--no-ablation`` skips it);
* the textbook random forest (*Hands-On ML* ch. 2, train + validation rows);
* HistGradientBoosting on the default transformer's features (train rows);
* LinearRegression and the median per ``ocean_proximity`` (the other evaluation baselines);
* the searched configuration, when ``--searched FILE`` names a best configuration recorded by the
  ``hyperparameter_search`` asset (JSON with ``training`` and ``features`` keys), or ``--search N``
  runs that search here with N trials (validation RMSE, as the asset does) and trains its best;
* the default network's 80% prediction intervals (calibrated on validation): coverage and mean width
  on the test split, overall and per slice;

then the default network's slices and the load average (the machine is shared: read every time next
to it).

    .venv/bin/python benchmarks/model_quality.py [--plots FOLDER] [--verbose] [--seed N] [--searched FILE | --search N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pandas as pd  # noqa: E402

from housing_platform.core.evaluation import (  # noqa: E402
    baseline_predictions,
    regression_metrics,
    slice_metrics,
    write_plots,
)
from housing_platform.core.features import feature_names, fit_transformer, transform  # noqa: E402
from housing_platform.core.model import TrainingConfig, predict, train_model  # noqa: E402
from housing_platform.core.schema import TARGET_COLUMN  # noqa: E402
from housing_platform.core.splits import split_frame  # noqa: E402
from housing_platform.core.validation import read_housing_csv, validate_housing_frame  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "data" / "california_housing.csv"
PARTS = ("train", "validation", "test")


def keras_run(splits, config: TrainingConfig, verbose: bool, **feature_options) -> dict:
    """Fit the transformer and train the network; test predictions, RMSE and seconds."""
    started = time.perf_counter()
    transformer = fit_transformer(splits.train, **feature_options)
    X = {
        "train": transform(transformer, splits.train, out_of_fold=True),
        "validation": transform(transformer, splits.validation),
        "test": transform(transformer, splits.test),
    }
    y = {name: getattr(splits, name)[TARGET_COLUMN].to_numpy() for name in PARTS}
    result = train_model(X["train"], y["train"], X["validation"], y["validation"], config,
                         log=print if verbose else None)
    predictions = predict(result.model, X["test"], config)
    return {
        "predictions": predictions,
        "metrics": regression_metrics(y["test"], predictions),
        "seconds": time.perf_counter() - started,
        "features": len(feature_names(transformer)),
        "epochs": f"{result.epochs_run} (best {result.best_epoch})",
        "transformer": transformer,
        "validation_predictions": predict(result.model, X["validation"], config),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--plots", type=Path, default=None, help="write the evaluation PNGs here")
    parser.add_argument("--seed", type=int, default=None, help="override TrainingConfig.seed")
    parser.add_argument("--searched", type=Path, default=None, help="a recorded best configuration (JSON)")
    parser.add_argument("--search", type=int, default=0, help="run a search of this many trials first")
    parser.add_argument("--no-ablation", action="store_true", help="skip the network without neighbourhood prices")
    parser.add_argument("--verbose", action="store_true", help="print per-epoch progress")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    valid = validate_housing_frame(read_housing_csv(args.data)).valid
    splits = split_frame(valid)
    y_test = splits.test[TARGET_COLUMN].to_numpy()
    print(f"rows: {len(valid):,} valid; split {splits.sizes}")

    config = TrainingConfig() if args.seed is None else TrainingConfig(seed=args.seed)
    rows = []
    default = keras_run(splits, config, args.verbose)
    rows.append(("keras, default config", default["metrics"], default["seconds"], f"{default['features']} features, "
                 f"{default['epochs']} epochs"))
    if not args.no_ablation:
        plain = keras_run(splits, config, args.verbose, neighbours=0)
        rows.append(("keras, no neighbourhood prices", plain["metrics"], plain["seconds"],
                     f"{plain['features']} features, {plain['epochs']} epochs"))
    recorded = json.loads(args.searched.read_text()) if args.searched else None
    if args.search:
        from housing_platform.core.search import SearchConfig, run_search

        t = time.perf_counter()
        found = run_search(splits.train, splits.validation, SearchConfig(n_trials=args.search), log=print)
        recorded = found["best"]
        print(f"search: {args.search} trials in {time.perf_counter() - t:.0f} s, best validation RMSE "
              f"${found['best_validation_rmse']:,.0f}: {recorded}")
    if recorded:
        searched = keras_run(splits, TrainingConfig(**recorded["training"]), args.verbose, **recorded["features"])
        rows.append(("keras, searched config", searched["metrics"], searched["seconds"], json.dumps(recorded)))

    t = time.perf_counter()
    baselines = baseline_predictions(splits.train, splits.test, default["transformer"], splits.validation)
    seconds = time.perf_counter() - t
    for name, values in baselines.items():
        rows.append((name, regression_metrics(y_test, values), float("nan"), "evaluation baseline"))
    textbook = regression_metrics(y_test, baselines["textbook_random_forest"])["rmse"]

    table = pd.DataFrame(
        [{"model": name, "test RMSE": f"${m['rmse']:,.0f}", "vs textbook": f"{m['rmse'] / textbook - 1:+.1%}",
          "MAE": f"${m['mae']:,.0f}", "R²": f"{m['r2']:.4f}", "train s": f"{s:.1f}", "notes": notes}
         for name, m, s, notes in rows]
    )
    print(table.to_string(index=False))
    print(f"baselines (all four, fit + predict): {seconds:.1f} s")

    from housing_platform.core.conformal import calibrate, intervals
    from housing_platform.core.evaluation import interval_slices

    calibration = calibrate(splits.validation[TARGET_COLUMN], default["validation_predictions"])
    lower, upper = intervals(default["predictions"], calibration)
    table = interval_slices(splits.test, y_test, lower, upper)
    print(f"{calibration.level:.0%} intervals (q = {calibration.quantile:.1f} on {calibration.calibration_rows:,} "
          f"validation rows):")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}" if abs(v) < 10 else f"{v:,.0f}"))

    slices = slice_metrics(splits.test, y_test, default["predictions"])
    print(slices.to_string(index=False, float_format=lambda v: f"{v:,.3f}" if abs(v) < 10 else f"{v:,.0f}"))
    if args.plots:
        for name, path in write_plots(y_test, default["predictions"], args.plots, slices, title="network").items():
            print(f"plot {name}: {path}")
    print(f"total: {time.perf_counter() - started:.1f} s; load average {os.getloadavg()[0]:.2f} "
          f"{os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} on {os.cpu_count()} CPUs")
    return 0 if default["metrics"]["rmse"] <= 50_000 else 1


if __name__ == "__main__":
    sys.exit(main())
