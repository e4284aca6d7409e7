"""The label gate's statistics: are new labels consistent with what the trusted data says prices are?

Plain pandas and scipy (no Dagster): `defs/labels` applies it to labelled captures. Three rules, each
deciding which new labelled rows are **held** for a person instead of trained on:

* **volume** (:func:`volume_holds`) — a source (feedback token, or the best key available) that sent
  more than ``max_labels_per_source_per_day`` labels in one UTC day has that day's labels held.
* **label consistency** (:func:`judge_consistency`) — for each group of new rows (overall, per source,
  per ``ocean_proximity`` slice, per source × slice) two slice-adjusted log quantities are compared with
  the same quantities on the trusted test split by a two-sided Mann–Whitney U test:

  - the champion's residual ``log(label / prediction)``, and
  - the label itself, ``log(label)``.

  Each is adjusted by the trusted median of its ``ocean_proximity`` slice, so a group that is all INLAND
  is compared with INLAND districts. A group is held when **both** moved, significantly (p below
  ``significance`` divided by the number of groups judged: Bonferroni) and by more than the effect
  thresholds on the median ratio, in the same direction: the labels moved away from what the trusted data
  says districts of this kind cost, and the features cannot explain the move. A covariate shift with
  honest labels (the simulator's ``income_shift``: incomes × 1.5, true prices) moves the residuals but
  not the labels, and passes; a label shift (``price_inflation``, a poisoning burst at 1.5×) moves both,
  and is held. Under honest labels the label test's p-value is uniform, so the false-alarm rate of a
  run is at most ``significance`` (Bonferroni), whatever the features do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field
from scipy import stats

from housing_platform.core.schema import CATEGORICAL_COLUMN, MAX_HOUSE_VALUE, MIN_HOUSE_VALUE, TARGET_COLUMN

PREDICTION_COLUMN = "prediction"
SOURCE_COLUMN = "label_source"
DAY_COLUMN = "label_day"
OVERALL = "(all)"
# Group levels, most specific first: a row is decided by the first judged group it belongs to.
SPECIFICITY = ("source × slice", "source", "slice", "overall")
GROUP_COLUMNS = [
    "level",
    "source",
    "slice",
    "rows",
    "median_ratio_vs_trusted",
    "residual_p_value",
    "label_ratio_vs_trusted",
    "label_p_value",
    "held",
]


class LabelGateLimits(BaseModel):
    """When new labels are held for review: the one home of these defaults (run config, checks, README)."""

    significance: float = Field(
        1e-3, gt=0, lt=1, description="Family-wise false-alarm rate of the consistency test per run "
        "(Bonferroni over the groups judged)."
    )
    max_median_ratio_shift: float = Field(
        0.15, gt=0, description="Largest shift of a group's median label/prediction ratio from the trusted "
        "split's (either direction: ×1.15 or ÷1.15) before it counts."
    )
    max_label_shift: float = Field(
        0.15, gt=0, description="Largest shift of a group's median label from the trusted median of the same "
        "ocean_proximity slice (either direction) before it counts."
    )
    min_group_rows: int = Field(50, ge=2, description="Fewest new labelled rows a group needs to be judged.")
    max_labels_per_source_per_day: int = Field(
        10_000, ge=1, description="Labels one source may send per UTC day; beyond it the day's labels are held."
    )


@dataclass(frozen=True)
class ConsistencyResult:
    """Per-group statistics (:data:`GROUP_COLUMNS`) and, per new row, why it is held ('' if it is not)."""

    judged: bool
    description: str
    groups: pd.DataFrame
    reasons: pd.Series

    @property
    def held(self) -> pd.Series:
        return self.reasons != ""


def log_ratio(labels, predictions) -> np.ndarray:
    """``log(label / prediction)``: the champion's residual on a multiplicative scale.

    Both are clipped to the target's schema range first, so a network's occasional negative or
    zero prediction gives a large but finite residual instead of NaN (which no test would count).
    """
    labels = np.clip(np.asarray(labels, dtype=float), MIN_HOUSE_VALUE, MAX_HOUSE_VALUE)
    predictions = np.clip(np.asarray(predictions, dtype=float), MIN_HOUSE_VALUE, MAX_HOUSE_VALUE)
    return np.log(labels) - np.log(predictions)


def _log_label(labels: pd.Series) -> np.ndarray:
    return np.log(np.clip(labels.to_numpy(dtype=float), MIN_HOUSE_VALUE, MAX_HOUSE_VALUE))


def _slice_adjusted(values: np.ndarray, slices: pd.Series, medians: dict, fallback: float) -> np.ndarray:
    return values - slices.map(medians).fillna(fallback).to_numpy(dtype=float)


def _shift(new: np.ndarray, trusted: np.ndarray) -> tuple[float, float]:
    """(median shift, two-sided Mann–Whitney p-value) of ``new`` against ``trusted``."""
    shift = float(np.median(new) - np.median(trusted))
    p_value = float(stats.mannwhitneyu(new, trusted, alternative="two-sided").pvalue)
    return shift, p_value


def _groups(frame: pd.DataFrame) -> list[tuple[str, str, str, np.ndarray]]:
    """(level, source, slice, boolean mask) of every group of new rows."""
    sources, slices = frame[SOURCE_COLUMN].astype(str), frame[CATEGORICAL_COLUMN].astype(str)
    groups = [("overall", OVERALL, OVERALL, np.ones(len(frame), dtype=bool))]
    groups += [("source", s, OVERALL, (sources == s).to_numpy()) for s in sorted(sources.unique())]
    groups += [("slice", OVERALL, c, (slices == c).to_numpy()) for c in sorted(slices.unique())]
    groups += [
        ("source × slice", s, c, ((sources == s) & (slices == c)).to_numpy())
        for s in sorted(sources.unique())
        for c in sorted(slices[sources == s].unique())
    ]
    return groups


def judge_consistency(
    new: pd.DataFrame, trusted: pd.DataFrame, limits: LabelGateLimits | None = None
) -> ConsistencyResult:
    """Compare the champion's residuals and the labels of ``new`` with those of ``trusted``.

    Both frames need ``median_house_value`` (the label), ``prediction`` (the current champion's) and
    ``ocean_proximity``; ``new`` also needs ``label_source``. Labels and predictions must be positive
    (the schema's range guarantees it for labels). Groups smaller than ``min_group_rows`` are reported
    but not judged.
    """
    limits = limits or LabelGateLimits()
    reasons = pd.Series("", index=new.index, dtype=object)
    if len(trusted) < limits.min_group_rows or len(new) < limits.min_group_rows:
        return ConsistencyResult(
            False,
            f"not judged: {len(new):,} new labelled rows and {len(trusted):,} trusted rows "
            f"(at least {limits.min_group_rows} of each needed)",
            pd.DataFrame(columns=GROUP_COLUMNS),
            reasons,
        )
    trusted_residual = log_ratio(trusted[TARGET_COLUMN], trusted[PREDICTION_COLUMN])
    trusted_label = _log_label(trusted[TARGET_COLUMN])
    trusted_slices = trusted[CATEGORICAL_COLUMN].astype(str)
    residual_medians = pd.Series(trusted_residual).groupby(trusted_slices.to_numpy()).median().to_dict()
    label_medians = pd.Series(trusted_label).groupby(trusted_slices.to_numpy()).median().to_dict()
    # Slices absent from the trusted split fall back to the overall medians.
    reference_residual = _slice_adjusted(trusted_residual, trusted_slices, residual_medians, 0.0)
    reference_label = _slice_adjusted(trusted_label, trusted_slices, label_medians, 0.0)

    new_slices = new[CATEGORICAL_COLUMN].astype(str)
    residual = _slice_adjusted(
        log_ratio(new[TARGET_COLUMN], new[PREDICTION_COLUMN]), new_slices, residual_medians,
        float(np.median(trusted_residual)),
    )
    label = _slice_adjusted(
        _log_label(new[TARGET_COLUMN]), new_slices, label_medians, float(np.median(trusted_label))
    )

    groups = _groups(new)
    judged = [(level, source, slice_, mask) for level, source, slice_, mask in groups if mask.sum() >= limits.min_group_rows]
    alpha = limits.significance / max(len(judged), 1)
    residual_bound, label_bound = np.log1p(limits.max_median_ratio_shift), np.log1p(limits.max_label_shift)
    rows, verdicts = [], []
    for level, source, slice_, mask in groups:
        count = int(mask.sum())
        if count < limits.min_group_rows:
            rows.append([level, source, slice_, count, np.nan, np.nan, np.nan, np.nan, False])
            continue
        residual_shift, residual_p = _shift(residual[mask], reference_residual)
        label_shift, label_p = _shift(label[mask], reference_label)
        held = bool(
            residual_p < alpha
            and label_p < alpha
            and abs(residual_shift) > residual_bound
            and abs(label_shift) > label_bound
            and np.sign(residual_shift) == np.sign(label_shift)
        )
        rows.append([level, source, slice_, count, float(np.exp(residual_shift)), residual_p,
                     float(np.exp(label_shift)), label_p, held])
        reason = (
            f"{_group_name(level, source, slice_)}: {count:,} labels, median label/prediction "
            f"{np.exp(residual_shift):.2f}× the trusted split's (p={residual_p:.1e}), labels "
            f"{np.exp(label_shift):.2f}× the trusted median of their slice (p={label_p:.1e})"
        )
        verdicts.append((SPECIFICITY.index(level), held, reason, mask))
    # Each row is decided by the most specific judged group it belongs to: a source's INLAND rows by
    # that source × INLAND, so honest slices (or tokens) beside a poisoned one are not held with it.
    decided = np.zeros(len(new), dtype=bool)
    fired = []
    for _, held, reason, mask in sorted(verdicts, key=lambda item: item[0]):
        if held and (mask & ~decided).any():
            fired.append(reason)
            reasons[mask & ~decided] = reason
        decided |= mask
    table = pd.DataFrame(rows, columns=GROUP_COLUMNS)
    if fired:
        more = f"; and {len(fired) - 3} more groups" if len(fired) > 3 else ""
        description = f"{int((reasons != '').sum()):,} of {len(new):,} new labels held — " + "; ".join(fired[:3]) + more
    else:
        description = (
            f"{len(new):,} new labels consistent with the trusted split in all {len(judged)} groups judged "
            f"(shifts within ×{1 + limits.max_median_ratio_shift:g} or not significant at {limits.significance:g})"
        )
    return ConsistencyResult(True, description, table, reasons)


def _group_name(level: str, source: str, slice_: str) -> str:
    if level == "overall":
        return "all sources"
    if level == "source":
        return f"source {source}"
    if level == "slice":
        return f"{CATEGORICAL_COLUMN}={slice_}"
    return f"source {source}, {CATEGORICAL_COLUMN}={slice_}"


def volume_holds(new: pd.DataFrame, limits: LabelGateLimits | None = None) -> pd.Series:
    """Per new row, why it is held for volume ('' if it is not): its source sent too many labels that day.

    ``new`` needs ``label_source`` and ``label_day`` (the UTC day the label arrived).
    """
    limits = limits or LabelGateLimits()
    reasons = pd.Series("", index=new.index, dtype=object)
    if new.empty:
        return reasons
    counts = new.groupby([SOURCE_COLUMN, DAY_COLUMN], sort=True).size()
    for (source, day), count in counts.items():
        if count > limits.max_labels_per_source_per_day:
            mask = (new[SOURCE_COLUMN] == source) & (new[DAY_COLUMN] == day)
            reasons[mask] = (
                f"source {source} sent {count:,} labels on {day} "
                f"(limit {limits.max_labels_per_source_per_day:,} per day)"
            )
    return reasons
