"""What fails the drift check: four rules read off the per-column drift table, each stated with its numbers.

``drift.py`` measures (Evidently's scores, thresholds raised to their noise floor); this module judges.
The check fails when any rule fires, and the verdict names every rule that fired:

* ``dataset_share`` — Evidently's dataset-drift rule: the share of drifted *features* (the prediction
  is not counted) is ``>= drift_share``.
* ``key_feature`` — a key feature (default ``median_income``, the strongest driver of the price) drifted.
* ``severe_single_feature`` — one feature moved far beyond what sampling noise explains: its score
  reached ``severe_drift_multiple`` times its threshold. That threshold is already the larger of the
  configured one and the column's noise floor, so the severe threshold is the multiple of whichever is
  larger. It catches what a user calls "a feature changed semantics" — a unit, a definition, a scale
  (×0.5, ×1.7) — which moves one input and every ratio built from it while the other eight features,
  and so the dataset share, stay put. Judged for the distances whose noise floor is known (normed
  Wasserstein, Jensen-Shannon), where a larger score means more drift; a column given a p-value test
  through ``per_column_method`` is not judged by it.
* ``prediction_drift`` — the distribution of the model's output drifted (its own threshold, raised to
  its noise floor like a feature's): the model sees something different, whatever moved.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from housing_platform.core.drift_noise_floor import FLOOR_KINDS
from housing_platform.core.schema import FEATURE_COLUMNS

RULE_DATASET_SHARE = "dataset_share"
RULE_KEY_FEATURE = "key_feature"
RULE_SEVERE_FEATURE = "severe_single_feature"
RULE_PREDICTION = "prediction_drift"
RULES = (RULE_DATASET_SHARE, RULE_KEY_FEATURE, RULE_SEVERE_FEATURE, RULE_PREDICTION)
# The methods whose score is a distance (drift when score >= threshold) with a known noise floor.
SEVERE_METHODS = frozenset(FLOOR_KINDS.values())


@dataclass(frozen=True)
class Judgement:
    """Which rules fired on one drift table, and the figures each rule looked at."""

    drifted_columns: list[str]  # drifted features, in FEATURE_COLUMNS order (the prediction is not listed)
    drifted_share: float  # drifted features / features
    dataset_drift: bool
    key_feature_drift: list[str]
    severe_thresholds: dict[str, float]  # per feature judged by the severe rule (empty when it is off)
    severe_feature_drift: list[str]  # features whose score reached their severe threshold
    prediction_drift: bool | None  # None when no prediction column was compared
    findings: dict[str, str]  # rule -> a sentence with its numbers, for each rule that fired, in RULES order

    @property
    def rules_fired(self) -> list[str]:
        return list(self.findings)

    @property
    def check_passed(self) -> bool:
        return not self.findings

    @property
    def reason(self) -> str:
        counted = f"{len(self.drifted_columns)} of {len(FEATURE_COLUMNS)} features drifted ({self.drifted_share:.0%})"
        if self.drifted_columns:
            counted += f": {', '.join(self.drifted_columns)}"
        if self.check_passed:
            return f"no rule fired; {counted}"
        if self.dataset_drift:  # its finding already counts the drifted features
            return "; ".join(self.findings.values())
        return "; ".join([*self.findings.values(), counted])


def judge(
    table: pd.DataFrame,
    *,
    drift_share: float,
    key_features: tuple[str, ...],
    severe_drift_multiple: float | None,
    fail_on_prediction_drift: bool,
    prediction_column: str | None,
) -> Judgement:
    """Apply the four rules (see the module doc) to ``table`` (one row per compared column)."""
    rows = table.set_index("column")
    drifted = rows["drifted"].astype(bool)
    drifted_columns = [c for c in FEATURE_COLUMNS if drifted[c]]
    drifted_share = len(drifted_columns) / len(FEATURE_COLUMNS)
    dataset_drift = drifted_share >= drift_share
    key_feature_drift = [c for c in key_features if drifted[c]]
    severe_thresholds = {}
    if severe_drift_multiple is not None:
        severe_thresholds = {
            c: round(severe_drift_multiple * float(rows.at[c, "threshold"]), 4)
            for c in FEATURE_COLUMNS
            if rows.at[c, "method"] in SEVERE_METHODS
        }
    severe = [c for c, limit in severe_thresholds.items() if float(rows.at[c, "score"]) >= limit]
    prediction_drift = bool(drifted[prediction_column]) if prediction_column else None

    def scored(column: str) -> str:  # neutral wording: for a p-value test the score is below its threshold
        return f"{column} drifted (score {rows.at[column, 'score']:.3f}, threshold {rows.at[column, 'threshold']:.3f})"

    findings = {}
    if dataset_drift:
        findings[RULE_DATASET_SHARE] = (
            f"{RULE_DATASET_SHARE}: {len(drifted_columns)} of {len(FEATURE_COLUMNS)} features drifted "
            f"({drifted_share:.0%}) ≥ drift_share {drift_share:.0%}: {', '.join(drifted_columns)}"
        )
    if key_feature_drift:
        findings[RULE_KEY_FEATURE] = f"{RULE_KEY_FEATURE}: " + ", ".join(scored(c) for c in key_feature_drift)
    if severe:
        findings[RULE_SEVERE_FEATURE] = f"{RULE_SEVERE_FEATURE}: " + ", ".join(
            f"{c} scored {rows.at[c, 'score']:.3f} ≥ its severe threshold {severe_thresholds[c]:.3f} "
            f"({severe_drift_multiple:g}× its threshold {rows.at[c, 'threshold']:.3f})"
            for c in severe
        )
    if prediction_drift and fail_on_prediction_drift:
        findings[RULE_PREDICTION] = f"{RULE_PREDICTION}: {scored(prediction_column)}"
    return Judgement(
        drifted_columns=drifted_columns,
        drifted_share=drifted_share,
        dataset_drift=dataset_drift,
        key_feature_drift=key_feature_drift,
        severe_thresholds=severe_thresholds,
        severe_feature_drift=severe,
        prediction_drift=prediction_drift,
        findings=findings,
    )


def nothing_judged() -> Judgement:
    """The judgement of a day with too few rows: nothing compared, no rule fired."""
    return Judgement([], 0.0, False, [], {}, [], None, {})
