"""Model quality benchmark: the default pipeline end to end on the real data, with baselines.

Loads ``data/california_housing.csv``, validates it, splits it by row hash, fits the transformer on
the train split, trains the network with the default :class:`TrainingConfig` (early stopping on the
validation split) and prints test metrics, the baselines' test RMSE and the timings.

    .venv/bin/python benchmarks/model_quality.py [--plots FOLDER] [--verbose] [--seed N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--plots", type=Path, default=None, help="write the evaluation PNGs here")
    parser.add_argument("--seed", type=int, default=None, help="override TrainingConfig.seed")
    parser.add_argument("--verbose", action="store_true", help="print per-epoch progress")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    valid = validate_housing_frame(read_housing_csv(args.data)).valid
    splits = split_frame(valid)
    print(f"rows: {len(valid):,} valid; split {splits.sizes}")

    t = time.perf_counter()
    transformer = fit_transformer(splits.train)
    X = {name: transform(transformer, getattr(splits, name)) for name in ("train", "validation", "test")}
    y = {name: getattr(splits, name)[TARGET_COLUMN].to_numpy() for name in ("train", "validation", "test")}
    transformer_seconds = time.perf_counter() - t
    print(f"transformer: {len(feature_names(transformer))} features, fit + transform {transformer_seconds:.1f} s")

    config = TrainingConfig() if args.seed is None else TrainingConfig(seed=args.seed)
    result = train_model(
        X["train"], y["train"], X["validation"], y["validation"], config, log=print if args.verbose else None
    )
    predictions = predict(result.model, X["test"], config)
    metrics = regression_metrics(y["test"], predictions)
    print(f"config: {config.model_dump()}")
    print(
        f"network: test RMSE ${metrics['rmse']:,.0f}  MAE ${metrics['mae']:,.0f}  R² {metrics['r2']:.4f}  "
        f"MAPE {metrics['mape']:.2%}  (n={metrics['count']:,})"
    )
    print(f"         {result.epochs_run} epochs (best {result.best_epoch}), train time {result.train_seconds:.1f} s")

    t = time.perf_counter()
    baselines = baseline_predictions(splits.train, splits.test, transformer, splits.validation)
    for name, values in baselines.items():
        print(f"baseline {name:<28} test RMSE ${regression_metrics(y['test'], values)['rmse']:,.0f}")
    print(f"baselines: {time.perf_counter() - t:.1f} s")

    slices = slice_metrics(splits.test, y["test"], predictions)
    print(slices.to_string(index=False, float_format=lambda v: f"{v:,.3f}" if abs(v) < 10 else f"{v:,.0f}"))
    if args.plots:
        for name, path in write_plots(y["test"], predictions, args.plots, slices, title="network").items():
            print(f"plot {name}: {path}")
    print(f"total: {time.perf_counter() - started:.1f} s")
    return 0 if metrics["rmse"] <= 50_000 else 1


if __name__ == "__main__":
    sys.exit(main())
