"""Drift across days: per feature and day the drift score, the failed days, and what the platform did next.

Plain Python (pandas + matplotlib's object API on the Agg canvas, as in ``core.evaluation``), no
Dagster. The ``drift_history`` asset gathers one :class:`HistoryDay` per day — the day's drift summary
as stored in its JSON report (so the history reads exactly what the check decided), the live RMSE and
labelled volume, and for a failed day the retraining that answered it (:class:`FollowUp`) — and this
module draws them: :func:`write_history_png` (a heatmap of score ÷ threshold per feature and day with
failed days marked, then the prediction's drift, the live RMSE and the labelled volume) and
:func:`history_html` / :func:`history_markdown` (the same story as a small standalone page and as
Dagster Markdown).
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from housing_platform.core.drift_verdict import CHECK_NAME
from housing_platform.core.numbers import COUNT, DOLLARS, for_people
from housing_platform.core.schema import FEATURE_COLUMNS

NO_REPORT = "no report"


@dataclass(frozen=True)
class FollowUp:
    """One retraining run that answered a failed day, and where its model went."""

    run_id: str
    run_status: str  # Dagster's run status, e.g. SUCCESS
    run_url: str
    version: str | None  # the registered version, None when the gate stopped the run before registry
    gate: str  # e.g. "passed", "refused: rmse_within_limit"
    rollout: str  # e.g. "champion", "pending_approval (held: label shift)", "previous", "registered only"
    version_url: str | None = None
    answers: str = ""  # the failed check the run was launched for (the sensor answers one failure per run)

    def sentence(self) -> str:
        made = f"version {self.version}" if self.version else "no version"
        answered = f" for {self.answers}" if self.answers else ""
        return f"run {self.run_id[:8]}{answered} ({self.run_status.lower()}): gate {self.gate} → {made}, {self.rollout}"


@dataclass(frozen=True)
class HistoryDay:
    """One UTC day of monitoring, as the platform judged it."""

    day: str
    verdict: str  # drift | no drift | insufficient data | no report
    check_passed: bool | None  # None: no drift report for that day
    rules_fired: tuple[str, ...] = ()
    ratios: dict[str, float] = field(default_factory=dict)  # column -> score / threshold (>= 1: drifted)
    live_rmse: float | None = None
    labelled_rows: int | None = None
    current_rows: int | None = None
    follow_ups: tuple[FollowUp, ...] = ()

    @property
    def failed(self) -> bool:
        return self.check_passed is False


def history_day(day: str, summary: dict[str, Any] | None, live_rmse: float | None = None,
                labelled_rows: int | None = None, follow_ups: tuple[FollowUp, ...] = ()) -> HistoryDay:
    """A day from its drift summary (``DriftResult.summary()`` as stored in the JSON report, or None)."""
    if summary is None:
        return HistoryDay(day, NO_REPORT, None, live_rmse=live_rmse, labelled_rows=labelled_rows, follow_ups=follow_ups)
    ratios = {
        row["column"]: float(row["score"]) / float(row["threshold"])
        for row in summary["table"]
        if row.get("threshold") and row.get("method") in ("wasserstein", "jensenshannon")
    }
    return HistoryDay(
        day=day,
        verdict=summary["verdict"],
        check_passed=bool(summary["check_passed"]),
        rules_fired=tuple(summary["rules_fired"]),
        ratios=ratios,
        live_rmse=live_rmse,
        labelled_rows=labelled_rows,
        current_rows=int(summary["current_rows"]),
        follow_ups=follow_ups,
    )


def score_matrix(days: list[HistoryDay], columns: tuple[str, ...]) -> np.ndarray:
    """``len(columns) x len(days)`` of score ÷ threshold; NaN where nothing was compared."""
    return np.array([[day.ratios.get(column, np.nan) for day in days] for column in columns], dtype=float)


def write_history_png(days: list[HistoryDay], path: str | Path, prediction_column: str = "prediction") -> Path:
    """The heatmap and the three daily series in one PNG at ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = [day.day[5:] for day in days]  # MM-DD
    x = np.arange(len(days))
    figure = Figure(figsize=(max(8.0, 0.32 * len(days) + 3), 9), layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(4, 1, height_ratios=[4, 1.1, 1.1, 1.1])
    heat = figure.add_subplot(grid[0])
    matrix = score_matrix(days, tuple(FEATURE_COLUMNS))
    shown = np.ma.masked_invalid(matrix)
    top = float(np.nanmax(matrix)) if np.isfinite(matrix).any() else 3.0
    norm = TwoSlopeNorm(vmin=0.0, vcenter=1.0, vmax=max(3.0, top))  # green below the threshold, red above
    image = heat.imshow(shown, aspect="auto", cmap="RdYlGn_r", norm=norm)
    heat.set_yticks(range(len(FEATURE_COLUMNS)), FEATURE_COLUMNS)
    heat.set_xticks(x, labels, rotation=90)
    heat.set_title(f"Drift score ÷ threshold per feature (≥ 1 drifted); ✕ = {CHECK_NAME} failed; blank = no report")
    figure.colorbar(image, ax=heat, label="score ÷ threshold")
    for index, day in enumerate(days):
        if day.failed:
            heat.add_patch(_outline(index, len(FEATURE_COLUMNS)))
            heat.text(index, -0.9, "✕", ha="center", va="center", color="#c62828", fontsize=12, clip_on=False)
    series = [
        ("prediction drift (÷ threshold)", [day.ratios.get(prediction_column, np.nan) for day in days], 1.0),
        ("live RMSE ($)", [np.nan if day.live_rmse is None else day.live_rmse for day in days], None),
        ("labelled rows", [np.nan if day.labelled_rows is None else day.labelled_rows for day in days], None),
    ]
    for row, (title, values, line) in enumerate(series, start=1):
        axis = figure.add_subplot(grid[row], sharex=heat)
        if row == 3:
            axis.bar(x, values, color="#5c6bc0")
        else:
            axis.plot(x, values, marker="o", color="#37474f")
        if line is not None:
            axis.axhline(line, color="#c62828", linestyle="--", linewidth=1)
        for index, day in enumerate(days):
            if day.failed:
                axis.axvspan(index - 0.5, index + 0.5, color="#c62828", alpha=0.12)
        axis.set_ylabel(title, fontsize=8)
        axis.tick_params(labelbottom=row == 3, axis="x", labelrotation=90)
    figure.savefig(path, dpi=90)
    return path


def _outline(index: int, rows: int):
    from matplotlib.patches import Rectangle

    return Rectangle((index - 0.5, -0.5), 1, rows, fill=False, edgecolor="#c62828", linewidth=2.5)


def history_markdown(days: list[HistoryDay], serving_now: str) -> str:
    """The failed days and what followed each, for the asset's Dagster metadata."""
    failed = [day for day in days if day.failed]
    lines = [
        f"**{len(failed)} of {len(days)} days failed `{CHECK_NAME}`** "
        f"({sum(day.check_passed is not None for day in days)} with a report). Serving now: {serving_now}.",
        "",
    ]
    if not failed:
        return "\n".join(lines + ["No day failed the drift check."])
    lines += ["| day | rules fired | what followed |", "|---|---|---|"]
    for day in failed:
        followed = "<br>".join(
            f"[{f.sentence()}]({f.run_url})" + (f" · [MLflow]({f.version_url})" if f.version_url else "")
            for f in day.follow_ups
        ) or "no retraining run answered it"
        lines.append(f"| {day.day} | {', '.join(day.rules_fired)} | {followed} |")
    return "\n".join(lines)


def history_html(days: list[HistoryDay], png: bytes, serving_now: str) -> str:
    """A small standalone page: the figure (embedded PNG) and, per failed day, what followed with links."""
    rows = []
    for day in days:
        status = {True: "passed", False: "FAILED", None: NO_REPORT}[day.check_passed]
        followed = "".join(
            f"<li><a href='{html.escape(f.run_url)}'>{html.escape(f.sentence())}</a>"
            + (f" · <a href='{html.escape(f.version_url)}'>MLflow version</a>" if f.version_url else "")
            + "</li>"
            for f in day.follow_ups
        )
        if day.failed and not followed:
            followed = "<li>no retraining run answered it</li>"
        rows.append(
            f"<tr class='{'failed' if day.failed else 'ok'}' data-day='{day.day}'><td>{day.day}</td><td>{status}</td>"
            f"<td>{html.escape(', '.join(day.rules_fired))}</td><td>{_count(day.current_rows)}</td>"
            f"<td>{_dollars(day.live_rmse)}</td><td>{_count(day.labelled_rows)}</td><td><ul>{followed}</ul></td></tr>"
        )
    failed = sum(day.failed for day in days)
    chains = "".join(
        f"<li><b>{day.day}</b> ({html.escape(', '.join(day.rules_fired))})<ul>"
        + ("".join(
            f"<li><a href='{html.escape(f.run_url)}'>{html.escape(f.sentence())}</a>"
            + (f" · <a href='{html.escape(f.version_url)}'>MLflow version</a>" if f.version_url else "") + "</li>"
            for f in day.follow_ups
        ) or "<li>no retraining run answered it</li>")
        + "</ul></li>"
        for day in days
        if day.failed
    )
    encoded = base64.b64encode(png).decode("ascii")
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>Drift history</title><style>"
        "body{font-family:system-ui,sans-serif;margin:16px 24px}table{border-collapse:collapse}td,th{border:1px solid"
        " #ccc;padding:3px 8px;vertical-align:top}tr.failed td:nth-child(2){color:#c62828;font-weight:700}"
        "ul{margin:0;padding-left:16px}img{max-width:100%}</style></head><body>\n"
        f"<h1>Drift history: {failed} of {len(days)} days failed {CHECK_NAME}</h1>\n"
        f"<p>{days[0].day if days else ''} to {days[-1].day if days else ''}. Serving now: {html.escape(serving_now)}.</p>\n"
        f"<h2>Failed days and what followed</h2><ul id='chains'>{chains or '<li>none</li>'}</ul>\n"
        f"<img alt='Drift history' src='data:image/png;base64,{encoded}'>\n"
        "<h2>Days</h2><table><thead><tr><th>day</th><th>check</th><th>rules fired</th><th>rows</th><th>live RMSE</th>"
        "<th>labelled</th><th>what followed</th></tr></thead><tbody>\n" + "\n".join(rows) + "\n</tbody></table>\n"
        "</body></html>\n"
    )


def _count(value: int | None) -> str:
    return for_people(value, COUNT)


def _dollars(value: float | None) -> str:
    return for_people(value, DOLLARS)
