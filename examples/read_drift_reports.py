"""How did drift develop this week? Load the daily `drift_report` partitions and plot each feature's score.

An analyst's script, not part of the platform: it reads the values the `drift_report` asset stored
(one tidy table per day: column, method, score, threshold, drifted) through the same Dagster
definitions and instance the platform uses, with
``defs.load_asset_value("drift_report", partition_key=day, instance=instance)``. Days that were never
materialized (no traffic, monitoring not run, before the first partition) are listed and skipped.

Run it where `make dev` would find the state (HOUSING_HOME, DAGSTER_HOME)::

    export HOUSING_HOME=$PWD/.housing DAGSTER_HOME=$PWD/.housing/dagster
    .venv/bin/python examples/read_drift_reports.py --end 2026-11-22 --days 7 --output drift_week.png

It prints the scores as a day × feature table and writes a PNG: one line per feature over the days,
a filled marker where that day's column drifted (its score reached its threshold), days without a
report shaded grey.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd

DRIFT_ASSET = "drift_report"
DEFAULT_THRESHOLD = 0.1  # Evidently's default for the distances the platform uses; days may raise it


def week_partition_keys(end: str, days: int) -> list[str]:
    """``days`` daily partition keys (YYYY-MM-DD) ending with ``end``, oldest first."""
    last = date.fromisoformat(end)
    return [(last - timedelta(days=offset)).isoformat() for offset in reversed(range(days))]


def load_drift_reports(defs, instance, partition_keys: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """The stored drift tables of ``partition_keys`` stacked with a ``partition`` column; and the days skipped."""
    import dagster as dg

    asset_key = dg.AssetKey(DRIFT_ASSET)
    known = set(defs.resolve_asset_graph().get(asset_key).partitions_def.get_partition_keys())
    materialized = instance.get_materialized_partitions(asset_key)
    tables, skipped = [], []
    for key in partition_keys:
        if key not in known or key not in materialized:
            skipped.append(key)
            continue
        try:
            table = defs.load_asset_value(DRIFT_ASSET, partition_key=key, instance=instance)
        except FileNotFoundError:  # recorded in the instance, but its stored value was deleted since
            skipped.append(key)
            continue
        if len(table):  # an "insufficient data" day stores an empty table
            tables.append(table.assign(partition=key))
        else:
            skipped.append(key)
    if not tables:
        return pd.DataFrame(columns=["partition", "column", "method", "score", "threshold", "drifted"]), skipped
    frame = pd.concat(tables, ignore_index=True)
    return frame[["partition", "column", "method", "score", "threshold", "drifted"]], skipped


def plot_drift_over_time(reports: pd.DataFrame, partition_keys: list[str], path: str | Path,
                         skipped: list[str] = ()) -> Path:
    """One line per column: drift score per day; filled markers where the column drifted; skipped days grey."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 5.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    positions = {key: index for index, key in enumerate(partition_keys)}
    palette = [f"C{i}" for i in range(10)]
    for index, (column, rows) in enumerate(reports.sort_values("partition").groupby("column", sort=True)):
        x = [positions[key] for key in rows["partition"]]
        colour = palette[index % len(palette)]
        axes.plot(x, rows["score"], marker="o", markerfacecolor="white", color=colour, label=column, linewidth=1.5)
        drifted = rows[rows["drifted"].astype(bool)]
        axes.scatter([positions[key] for key in drifted["partition"]], drifted["score"], color=colour, s=60, zorder=3)
    for number, key in enumerate(sorted(skipped)):
        axes.axvspan(positions[key] - 0.5, positions[key] + 0.5, color="0.92", zorder=0,
                     label="no drift report" if number == 0 else None)
    axes.axhline(DEFAULT_THRESHOLD, color="black", linestyle="--", linewidth=1,
                 label=f"default threshold {DEFAULT_THRESHOLD}")
    axes.set_xticks(range(len(partition_keys)), partition_keys, rotation=30, ha="right")
    axes.set_xlim(-0.5, len(partition_keys) - 0.5)
    axes.set(ylabel="drift score (normed Wasserstein / Jensen-Shannon)",
             title=f"drift per feature, {partition_keys[0]} to {partition_keys[-1]} (filled = drifted)")
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


def main(argv: list[str] | None = None) -> int:
    today = datetime.now(timezone.utc).date().isoformat()
    parser = argparse.ArgumentParser(description="Plot a week of drift_report partitions.")
    parser.add_argument("--end", default=today, help="last day (YYYY-MM-DD, UTC); default today")
    parser.add_argument("--days", type=int, default=7, help="how many days up to --end (default 7)")
    parser.add_argument("--output", type=Path, default=Path("drift_over_time.png"), help="the PNG to write")
    args = parser.parse_args(argv)

    import dagster as dg

    from housing_platform.defs.definitions import build_definitions

    defs = build_definitions()  # from the environment now, like `dagster dev` would
    keys = week_partition_keys(args.end, args.days)
    with dg.DagsterInstance.get() as instance:
        reports, skipped = load_drift_reports(defs, instance, keys)
    if skipped:
        print(f"no drift report for {len(skipped)} of {len(keys)} day(s): {', '.join(skipped)}")
    if reports.empty:
        print("nothing to plot: materialize drift_report for at least one of these days first")
        return 1
    scores = reports.pivot_table(index="partition", columns="column", values="score")
    print(scores.to_string(float_format=lambda value: f"{value:.3f}"))
    path = plot_drift_over_time(reports, keys, args.output, skipped)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
