"""The platform's verdict on one day of drift, in words a person reads first — in the HTML and in Dagster.

One pure function, :func:`drift_verdict`, turns the JSON summary of a drift computation
(:meth:`~housing_platform.core.drift.DriftResult.summary`, which is also stored in the day's JSON report)
into a :class:`DriftVerdict`: a headline that states the check's result exactly as the check
``no_feature_drift`` does, each rule of :mod:`~housing_platform.core.drift_rules` with the numbers it
looked at (fired or not), the sample size and the noise floor, and a per-column table. The drift HTML
report (:mod:`~housing_platform.core.drift_report_html`) and the ``drift_report`` asset's Markdown
metadata are two renderings of that same object, so they cannot say different things.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from housing_platform.core.drift_rules import RULE_DATASET_SHARE, RULE_KEY_FEATURE, RULE_PREDICTION, RULE_SEVERE_FEATURE
from housing_platform.core.numbers import COUNT, SCORE, SHARE, for_people
from housing_platform.core.schema import CATEGORICAL_COLUMN, FEATURE_COLUMNS

CHECK_NAME = "no_feature_drift"  # the Dagster check this verdict is the result of (defs.monitoring.checks)
PASSED, FAILED = "passed", "failed"


@dataclass(frozen=True)
class RuleLine:
    """One rule of the check: whether it fired and the figures it looked at."""

    rule: str
    fired: bool
    text: str


@dataclass(frozen=True)
class DriftVerdict:
    """What the platform concluded on one day, ready to render."""

    check_passed: bool
    verdict: str  # drift | no drift | insufficient data
    headline: str  # e.g. "Check no_feature_drift failed: drift (key_feature, prediction_drift)"
    rules: tuple[RuleLine, ...]
    sample: str  # rows compared, reference rows, sampling
    noise_floor: str  # how the thresholds were raised on this day
    columns: tuple[dict[str, Any], ...]  # per column: column, method, score, threshold, noise floor, drifted

    @property
    def status(self) -> str:
        return PASSED if self.check_passed else FAILED

    def to_markdown(self) -> str:
        lines = [f"## {self.headline}", ""]
        lines += [f"- **{'FIRED' if r.fired else 'not fired'}** · {r.text}" for r in self.rules]
        lines += ["", f"**Sample:** {self.sample}", "", f"**Noise floor:** {self.noise_floor}"]
        if self.columns:
            lines += ["", "| column | score | threshold | noise floor | drifted |", "|---|---:|---:|---:|---|"]
            lines += [
                f"| {c['column']} | {_score(c['score'])} | {_score(c['threshold'])} | {_score(c.get('noise_floor'))} "
                f"| {'yes' if c['drifted'] else 'no'} |"
                for c in self.columns
            ]
        return "\n".join(lines)

    def to_html(self) -> str:
        """A static section (no script): the verdict stays readable when Evidently's scripts do not load."""
        rules = "".join(
            f"<li class='{'fired' if r.fired else 'quiet'}'><b>{'FIRED' if r.fired else 'not fired'}</b> · "
            f"{html.escape(r.text)}</li>"
            for r in self.rules
        )
        rows = "".join(
            f"<tr><td>{html.escape(c['column'])}</td><td>{_score(c['score'])}</td><td>{_score(c['threshold'])}</td>"
            f"<td>{_score(c.get('noise_floor'))}</td><td>{'yes' if c['drifted'] else 'no'}</td></tr>"
            for c in self.columns
        )
        table = (
            "<table><thead><tr><th>column</th><th>score</th><th>threshold</th><th>noise floor</th><th>drifted</th>"
            f"</tr></thead><tbody>{rows}</tbody></table>"
            if rows
            else ""
        )
        return (
            f"<section id='platform-verdict' class='verdict {self.status}' data-check='{CHECK_NAME}' "
            f"data-check-passed='{str(self.check_passed).lower()}'>"
            f"<h1>{html.escape(self.headline)}</h1><ul>{rules}</ul>"
            f"<p><b>Sample:</b> {html.escape(self.sample)}</p><p><b>Noise floor:</b> {html.escape(self.noise_floor)}</p>"
            f"{table}<p class='then'>Evidently's detail follows; where its dataset-drift headline is only one of the "
            "platform's rules, it is annotated so.</p></section>"
        )


def drift_verdict(summary: dict[str, Any]) -> DriftVerdict:
    """The verdict of one day from ``summary`` (``DriftResult.summary()`` or the JSON report's copy)."""
    fired = list(summary["rules_fired"])
    passed = bool(summary["check_passed"])
    verdict = summary["verdict"]
    if passed:
        headline = f"Check {CHECK_NAME} passed: {verdict}"
    else:
        headline = f"Check {CHECK_NAME} failed: {verdict} ({', '.join(fired)})"
    config = summary["config"]
    computed = bool(summary["table"])
    rules = _rule_lines(summary, set(fired)) if computed else ()
    if computed:
        sample = (
            f"{for_people(summary['current_rows'], COUNT)} current rows against "
            f"{for_people(summary['reference_rows'], COUNT)} reference rows"
            + _sampled(summary)
        )
    else:
        sample = f"{summary['current_rows']:,} current rows, fewer than min_rows={config['min_rows']:,}: nothing compared"
    return DriftVerdict(
        check_passed=passed,
        verdict=verdict,
        headline=headline,
        rules=rules,
        sample=sample,
        noise_floor=_noise_floor_text(summary) if computed else "not computed",
        columns=tuple(summary["table"]),
    )


def _rule_lines(summary: dict[str, Any], fired: set[str]) -> tuple[RuleLine, ...]:
    table = {row["column"]: row for row in summary["table"]}
    features = [c for c in table if c in FEATURE_COLUMNS]
    predictions = [c for c in table if c not in FEATURE_COLUMNS]
    drifted = summary["drifted_columns"]
    share = float(summary["drifted_share"])
    lines = [
        RuleLine(
            RULE_DATASET_SHARE,
            RULE_DATASET_SHARE in fired,
            f"{RULE_DATASET_SHARE}: {len(drifted)} of {len(features)} features drifted ({for_people(share, SHARE)}"
            f"{': ' + ', '.join(drifted) if drifted else ''}); fires at ≥ {for_people(summary['drift_share_threshold'], SHARE)}",
        )
    ]
    key_parts = [_scored(table[c]) for c in summary["key_features"] if c in table]
    lines.append(RuleLine(RULE_KEY_FEATURE, RULE_KEY_FEATURE in fired, f"{RULE_KEY_FEATURE}: " + "; ".join(key_parts)))
    multiple = summary.get("severe_drift_multiple")
    if multiple is None:
        lines.append(RuleLine(RULE_SEVERE_FEATURE, False, f"{RULE_SEVERE_FEATURE}: switched off"))
    else:
        judged = [row for row in table.values() if row.get("severe_threshold") is not None]
        worst = max(judged, key=lambda r: r["score"] / r["severe_threshold"]) if judged else None
        if summary["severe_feature_drift"]:
            text = ", ".join(
                f"{c} scored {_score(table[c]['score'])} ≥ its severe threshold {_score(table[c]['severe_threshold'])}"
                for c in summary["severe_feature_drift"]
            )
        elif worst is not None:
            text = (
                f"closest {worst['column']} scored {_score(worst['score'])} < its severe threshold "
                f"{_score(worst['severe_threshold'])}"
            )
        else:
            text = "no feature judged"
        lines.append(
            RuleLine(
                RULE_SEVERE_FEATURE,
                RULE_SEVERE_FEATURE in fired,
                f"{RULE_SEVERE_FEATURE}: {text} ({multiple:g}× the threshold)",
            )
        )
    for column in predictions:
        effect = "" if summary["config"].get("fail_on_prediction_drift", True) else " (does not fail the check)"
        lines.append(
            RuleLine(RULE_PREDICTION, RULE_PREDICTION in fired, f"{RULE_PREDICTION}: {_scored(table[column])}{effect}")
        )
    return tuple(lines)


def _scored(row: dict[str, Any]) -> str:
    state = "drifted" if row["drifted"] else "stable"
    return f"{row['column']} {state}, score {_score(row['score'])} vs threshold {_score(row['threshold'])}"


def _sampled(summary: dict[str, Any]) -> str:
    parts = []
    if summary["compared_current_rows"] < summary["current_rows"]:
        parts.append(f"current sampled to {summary['compared_current_rows']:,}")
    if summary["compared_reference_rows"] < summary["reference_rows"]:
        parts.append(f"reference sampled to {summary['compared_reference_rows']:,}")
    return f" ({', '.join(parts)}, seeded)" if parts else ""


def _noise_floor_text(summary: dict[str, Any]) -> str:
    config = summary["config"]
    quantile = config.get("noise_floor_quantile")
    if quantile is None:
        return "off: the configured thresholds apply unchanged"
    raised = [
        f"{row['column']} {_score(row['threshold'])}"
        for row in summary["table"]
        if row.get("noise_floor") is not None and row["noise_floor"] >= row["threshold"] - 1e-12
        and row["noise_floor"] > _configured(row["column"], config)
    ]
    floors = [row["noise_floor"] for row in summary["table"] if row.get("noise_floor") is not None]
    span = f"floors {_score(min(floors))}–{_score(max(floors))}" if floors else "no floor computed"
    head = (
        f"the {quantile:.0%} quantile of the distance between two same-distribution samples of this size ({span})"
    )
    if raised:
        return f"{head}; thresholds raised to it: {', '.join(raised)}"
    return f"{head}; below every configured threshold, which apply unchanged"


def _configured(column: str, config: dict[str, Any]) -> float:
    overrides = config.get("per_column_threshold") or {}
    if column in overrides:
        return float(overrides[column])
    return float(config["categorical_threshold"] if column == CATEGORICAL_COLUMN else config["numerical_threshold"])


def _score(value: float | None) -> str:
    return for_people(value, SCORE)
