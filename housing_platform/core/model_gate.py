"""The evaluation gate: the rules a candidate model must pass before it may become the champion.

Like SageMaker Pipelines' ConditionStep and TFX's Evaluator "blessing", the gate has both an
absolute threshold and a no-regression rule against the current champion scored on the *same*
test rows. Because those test rows move with the data (labelled traffic and a changed raw file land in
them), a fifth rule compares candidate and champion on the pinned golden holdout
(:mod:`housing_platform.core.golden_holdout`), a yardstick no new data can move. It reads only the
evaluation report (a plain dict), so it is testable without Dagster and the blocking asset checks on
`evaluation_report` are thin wrappers around it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, Field, model_validator

RMSE_CHECK = "rmse_within_limit"
BASELINE_CHECK = "beats_baseline"
CHAMPION_CHECK = "no_regression_vs_champion"
SLICE_CHECK = "no_weak_slice"
GOLDEN_CHECK = "no_regression_on_golden_holdout"
GATE_CHECKS = (RMSE_CHECK, BASELINE_CHECK, CHAMPION_CHECK, SLICE_CHECK, GOLDEN_CHECK)
# The baselines of `evaluation.baseline_predictions` the "beats baseline" rule can be held against.
BASELINE_LABELS = {
    "linear_regression": "LinearRegression",
    "textbook_random_forest": "the textbook random forest (Hands-On ML ch. 2)",
    "hist_gradient_boosting": "HistGradientBoosting",
    "median_per_ocean_proximity": "the median per ocean_proximity",
}


class GateThresholds(BaseModel):
    """Limits of the gate; recorded in every evaluation report so a verdict can be re-read later."""

    max_rmse_dollars: float = Field(55_000.0, description="Largest acceptable test RMSE, USD.")
    baseline_to_beat: Literal[
        "linear_regression", "textbook_random_forest", "hist_gradient_boosting", "median_per_ocean_proximity"
    ] = Field("linear_regression", description="The baseline of the evaluation report the check beats_baseline "
              "holds the candidate against (textbook_random_forest: Hands-On ML ch. 2's pipeline, same rows).")
    # 5%, not the former 10%: the linear baseline now sees the neighbourhood prices, which alone moved it from
    # $57,540 to $47,747 on the real test split, so 5% below it ($45,360) is a stricter bar than 10% below the
    # old one ($51,786). The default network is 14% below it; the 3-epoch networks of the end-to-end tests 9%.
    min_improvement_over_baseline: float = Field(
        0.05, description="The RMSE must be at least this fraction below the baseline_to_beat's (negative: may "
        "exceed it by at most that fraction)."
    )
    max_regression_vs_champion: float = Field(
        0.01, description="The RMSE may exceed the champion's on the same test rows by at most this fraction."
    )
    max_slice_rmse_ratio: float = Field(1.6, description="No slice may have an RMSE above this multiple of overall.")
    min_slice_rows: int = Field(100, description="Slices with fewer test rows are reported but not gated.")
    # Measured (default config, the demo's traffic: 1,000 stable + 1,500 income-shifted labelled rows, seeds
    # 42/1/7): an honest retrain scored -2.8%, -2.6% and +1.4% against its champion on the golden rows — two
    # networks trained on different data differ by about +-3% — so 5% keeps the demo's loop closing, while a
    # model that learned prices x1.25 is far worse there (see README, "The golden holdout").
    max_golden_regression_vs_champion: float = Field(
        0.05,
        description="The RMSE on the pinned golden holdout may exceed the champion's there by at most this fraction.",
    )
    # Measured on the platform's spans (base rows + appended traffic): stable and income-shifted traffic
    # move a category's median price by at most 0.6%; prices x1.25 move every one by 25%, and 1,500
    # INLAND labels at 1.5x move INLAND's by 7%. With >= 500 rows the median's sampling error is <= 3.4%.
    max_label_median_shift: float = Field(
        0.05,
        description="A median price per ocean_proximity (or overall) moving more than this fraction from the "
        "champion's training data is a label shift: the version waits for a person (alias pending_approval).",
    )
    min_label_shift_rows: int = Field(
        500, description="Categories with fewer labelled rows (in either span) are not compared for label shift."
    )

    @model_validator(mode="before")
    @classmethod
    def _legacy_names(cls, data):
        # Reports written before the baseline was configurable recorded `min_improvement_over_linear`.
        if isinstance(data, dict) and "min_improvement_over_linear" in data:
            data = dict(data)
            legacy = data.pop("min_improvement_over_linear")
            data.setdefault("min_improvement_over_baseline", legacy)
            data.setdefault("baseline_to_beat", "linear_regression")
        return data


@dataclass(frozen=True)
class GateVerdict:
    name: str
    passed: bool
    description: str
    skipped: bool = False
    details: dict = field(default_factory=dict)
    # A failure a person must judge rather than a block: the Dagster check reports it as a warning, so the
    # version is registered but held (alias pending_approval) instead of promoted.
    needs_review: bool = False


def evaluate_model_gate(report: dict, thresholds: GateThresholds | None = None) -> dict[str, GateVerdict]:
    """Apply every rule to an evaluation report (the ``evaluation_report`` asset's value), by rule name.

    ``thresholds`` defaults to the ones recorded in the report, so a verdict can be re-read later.
    """
    limits = thresholds or GateThresholds(**report["gate_thresholds"])
    rmse = float(report["metrics"]["rmse"])
    verdicts = {}

    verdicts[RMSE_CHECK] = GateVerdict(
        RMSE_CHECK,
        rmse <= limits.max_rmse_dollars,
        f"test RMSE ${rmse:,.0f} (limit ${limits.max_rmse_dollars:,.0f})",
        details={"rmse": rmse, "limit": limits.max_rmse_dollars},
    )

    verdicts[BASELINE_CHECK] = baseline_verdict(report, limits)

    champion = report.get("champion")
    if not champion:
        verdicts[CHAMPION_CHECK] = GateVerdict(
            CHAMPION_CHECK, True, "skipped: no champion exists yet, so there is nothing to regress against", skipped=True
        )
    elif champion.get("model_sha256") and champion["model_sha256"] == report.get("candidate_model_sha256"):
        # Comparing a model with itself would pass trivially and hide a wiring error.
        verdicts[CHAMPION_CHECK] = GateVerdict(
            CHAMPION_CHECK,
            False,
            f"the 'champion' (version {champion['version']}) is the candidate itself: the comparison is void",
            details={"champion_version": champion["version"]},
        )
    else:
        champion_rmse = float(champion["metrics"]["rmse"])
        allowed = champion_rmse * (1 + limits.max_regression_vs_champion)
        verdicts[CHAMPION_CHECK] = GateVerdict(
            CHAMPION_CHECK,
            rmse <= allowed,
            f"test RMSE ${rmse:,.0f} vs champion v{champion['version']} ${champion_rmse:,.0f} on the same "
            f"{report['test_rows']:,} rows (allowed ${allowed:,.0f}, +{limits.max_regression_vs_champion:.0%})",
            details={"rmse": rmse, "champion_rmse": champion_rmse, "champion_version": champion["version"]},
        )

    # Slices are rows of `evaluation.slice_metrics` (slice_by, slice, count, rmse, ...); "all" is overall.
    weak = [
        s for s in report["slices"]
        if s["slice_by"] != "all" and s["count"] >= limits.min_slice_rows
        and s["rmse"] > limits.max_slice_rmse_ratio * rmse
    ]
    verdicts[SLICE_CHECK] = GateVerdict(
        SLICE_CHECK,
        not weak,
        f"every slice with ≥ {limits.min_slice_rows} rows has RMSE ≤ {limits.max_slice_rmse_ratio}× overall"
        if not weak
        else "slices above "
        + f"{limits.max_slice_rmse_ratio}× overall RMSE: "
        + ", ".join(f"{s['slice_by']}={s['slice']} (${s['rmse']:,.0f}, {s['count']} rows)" for s in weak),
        details={"weak_slices": ", ".join(f"{s['slice_by']}={s['slice']}" for s in weak) or "none"},
    )
    verdicts[GOLDEN_CHECK] = golden_verdict(report, limits)
    return verdicts


def baseline_verdict(report: dict, limits: GateThresholds) -> GateVerdict:
    """The candidate's test RMSE against ``limits.baseline_to_beat``'s on the same rows."""
    rmse = float(report["metrics"]["rmse"])
    name = limits.baseline_to_beat
    label = BASELINE_LABELS[name]
    baseline = (report.get("baselines") or {}).get(name)
    if not baseline:  # a report without the named baseline cannot pass a rule that needs it
        return GateVerdict(BASELINE_CHECK, False, f"the evaluation report has no {name} baseline to compare with",
                           details={"baseline": name})
    baseline_rmse = float(baseline["rmse"])
    improvement = limits.min_improvement_over_baseline
    required = baseline_rmse * (1 - improvement)
    return GateVerdict(
        BASELINE_CHECK,
        rmse <= required,
        f"test RMSE ${rmse:,.0f} vs {label} ${baseline_rmse:,.0f}: {1 - rmse / baseline_rmse:.1%} lower "
        f"(required {improvement:.0%}, at most ${required:,.0f})",
        details={"rmse": rmse, "baseline": name, "baseline_rmse": baseline_rmse, "required_rmse": required},
    )


def golden_verdict(report: dict, limits: GateThresholds) -> GateVerdict:
    """Candidate vs. champion on the pinned golden holdout (``report["golden_holdout"]``).

    Blocks when the candidate is worse there by more than ``max_golden_regression_vs_champion`` — unless
    the training labels shifted (``report["label_shift"]["shifted"]``): then the pinned labels may be the
    stale ones, which only a person can tell, so the verdict fails with ``needs_review`` (held, not blocked).
    """
    golden = report.get("golden_holdout")
    if not golden:  # the yardstick is part of the gate: a report without it is a wiring error
        return GateVerdict(GOLDEN_CHECK, False, "no golden holdout in the evaluation report: nothing trusted to compare on")
    candidate = float(golden["metrics"]["rmse"])
    champion = golden.get("champion_metrics")
    rows = f"{golden['rows']:,} pinned golden rows"
    if not report.get("champion"):
        return GateVerdict(GOLDEN_CHECK, True, f"skipped: no champion yet (candidate RMSE ${candidate:,.0f} on the {rows})",
                           skipped=True, details={"golden_rmse": candidate, "golden_rows": golden["rows"]})
    if not champion:
        return GateVerdict(GOLDEN_CHECK, False, "the champion was not scored on the golden holdout")
    champion_rmse = float(champion["rmse"])
    allowed = champion_rmse * (1 + limits.max_golden_regression_vs_champion)
    version = report["champion"]["version"]
    description = (f"golden holdout RMSE ${candidate:,.0f} vs champion v{version} ${champion_rmse:,.0f} on the {rows} "
                   f"({candidate / champion_rmse - 1:+.1%}; allowed ${allowed:,.0f}, "
                   f"+{limits.max_golden_regression_vs_champion:.0%}); test split RMSE "
                   f"${float(report['metrics']['rmse']):,.0f} vs ${float(report['champion']['metrics']['rmse']):,.0f}")
    details = {"golden_rmse": candidate, "champion_golden_rmse": champion_rmse, "allowed_golden_rmse": allowed,
               "golden_rows": golden["rows"], "champion_version": version}
    if candidate <= allowed:
        return GateVerdict(GOLDEN_CHECK, True, description, details=details)
    shift = report.get("label_shift") or {}
    if shift.get("shifted"):
        return GateVerdict(GOLDEN_CHECK, False, description + f"; held for a person, not blocked: {shift['reason']}",
                           details=details, needs_review=True)
    return GateVerdict(GOLDEN_CHECK, False, description, details=details)
