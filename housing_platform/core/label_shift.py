"""Label shift: has the price distribution the platform learns from moved since the champion was trained?

The evaluation gate compares models; it cannot tell a world that changed from labels that are wrong.
A raw file whose every price was multiplied by 1.25 (and clipped to the schema's maximum, so every row
stays valid) trains a model that beats the champion on the new test split, because that split carries
the same wrong labels. TFDV's answer is to compare each span's statistics, labels included, with the
previous span's; this module does that for the label only, per `ocean_proximity` (the coarsest slice
whose price level the business knows by heart) and overall.

:func:`label_statistics` summarises a span (rows and median price per category); the statistics of the
champion's span are recorded on its registered version, so :func:`compare_label_statistics` can compare
a candidate's span with them later. A category counts only when both spans hold at least
``min_category_rows`` rows of it (ISLAND has 5 districts: its median is noise). The limits are
:class:`~housing_platform.core.model_gate.GateThresholds` fields (``max_label_median_shift``,
``min_label_shift_rows``), their one home; the measurements behind the defaults are stated there.

A shift does not fail anything: the version that passes the gate is registered and waits for a person
(alias ``pending_approval``), because only a person knows whether prices really moved.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import pandas as pd

from housing_platform.core.schema import CATEGORICAL_COLUMN, TARGET_COLUMN

OVERALL = "all"  # the key of the whole span beside the categories


def label_statistics(frame: pd.DataFrame) -> dict:
    """Rows and median label overall and per `ocean_proximity`: ``{"all": {...}, "by_category": {...}}``.

    JSON-ready (plain floats and ints), small enough for a model-version tag.
    """
    labels = pd.to_numeric(frame[TARGET_COLUMN], errors="coerce")
    known = frame.assign(**{TARGET_COLUMN: labels})[labels.notna()]

    def summary(values: pd.Series) -> dict:
        return {"rows": int(len(values)), "median": float(values.median()) if len(values) else math.nan}

    by_category = {str(name): summary(group[TARGET_COLUMN]) for name, group in known.groupby(CATEGORICAL_COLUMN)}
    return {OVERALL: summary(known[TARGET_COLUMN]), "by_category": dict(sorted(by_category.items()))}


@dataclass(frozen=True)
class LabelMove:
    """How the median label of one category (or of the whole span) moved between two spans."""

    category: str
    champion_median: float
    candidate_median: float
    champion_rows: int
    candidate_rows: int
    compared: bool  # both spans had enough rows of it

    @property
    def change(self) -> float:
        """Relative change of the median, candidate over champion, minus one."""
        return self.candidate_median / self.champion_median - 1 if self.champion_median else math.inf

    def describe(self) -> str:
        return (f"{self.category}: median ${self.champion_median:,.0f} → ${self.candidate_median:,.0f} "
                f"({self.change:+.1%}, {self.champion_rows:,} → {self.candidate_rows:,} rows)")


@dataclass(frozen=True)
class LabelShift:
    """The verdict: ``shifted`` means a person must approve the version before it becomes champion."""

    shifted: bool
    assessed: bool  # False when there was nothing to compare with (no champion, or no recorded statistics)
    reason: str
    max_median_shift: float
    moves: list[LabelMove] = field(default_factory=list)

    @property
    def exceeding(self) -> list[LabelMove]:
        return [m for m in self.moves if m.compared and abs(m.change) > self.max_median_shift]

    def to_dict(self) -> dict:
        """JSON-ready, for the evaluation report."""
        return {
            "shifted": self.shifted,
            "assessed": self.assessed,
            "reason": self.reason,
            "max_median_shift": self.max_median_shift,
            "moves": [{**m.__dict__, "change": m.change} for m in self.moves],
        }


def parse_statistics(text: str | None) -> dict | None:
    """Statistics as recorded in a tag (JSON), or None when absent or unreadable."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) and OVERALL in value and "by_category" in value else None


def compare_label_statistics(
    champion: dict | None, candidate: dict, max_median_shift: float, min_category_rows: int
) -> LabelShift:
    """Shifted when the median label of any category with enough rows in both spans (or of the whole
    span) moved by more than ``max_median_shift`` (a fraction) from the champion's span to the candidate's.
    """
    if champion is None:
        return LabelShift(False, False, "not assessed: no label statistics of a champion's training data "
                          "to compare with (no champion yet, or one registered before they were recorded)",
                          max_median_shift)
    pairs = [(OVERALL, champion[OVERALL], candidate[OVERALL])]
    categories = sorted(set(champion["by_category"]) | set(candidate["by_category"]))
    empty = {"rows": 0, "median": math.nan}
    pairs += [(c, champion["by_category"].get(c, empty), candidate["by_category"].get(c, empty)) for c in categories]
    moves = [
        LabelMove(name, float(old["median"]), float(new["median"]), int(old["rows"]), int(new["rows"]),
                  compared=min(int(old["rows"]), int(new["rows"])) >= min_category_rows)
        for name, old, new in pairs
    ]
    verdict = LabelShift(False, True, "", max_median_shift, moves)
    exceeding = verdict.exceeding
    compared = [m for m in moves if m.compared]
    if exceeding:
        reason = (f"label shift: the median price moved by more than {max_median_shift:.0%} since the champion's "
                  "training data: " + "; ".join(m.describe() for m in exceeding))
    else:
        largest = max(compared, key=lambda m: abs(m.change), default=None)
        reason = (f"no label shift: every median price within {max_median_shift:.0%} of the champion's training "
                  "data" + (f" (largest move {largest.describe()})" if largest else ""))
    return LabelShift(bool(exceeding), True, reason, max_median_shift, moves)
