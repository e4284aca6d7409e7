"""Safe rollout: whether a challenger may replace the champion, and whether a new champion must roll back.

Plain numpy/pandas (no Dagster, no MLflow): the `challenger_comparison` asset, the rollback check, the
CLI and the tests call it with frames of captured, labelled traffic.

* :class:`RolloutConfig` holds every limit (its defaults are the only ones) and the two settings a
  registered challenger carries: the mode (``direct | shadow | canary``) and the canary share.
* :func:`compare_paired` (shadow: both models scored the *same* rows) and :func:`compare_two_sample`
  (canary: each model answered its own rows) give the relative RMSE difference of challenger vs
  champion with a seeded bootstrap confidence interval, and the RMSE per ``ocean_proximity`` and
  per income quintile.
* :func:`rollout_decision` turns a comparison plus each model's error rate and p99 latency into
  **promote**, **wait** (with how many more labelled rows a power calculation asks for) or **reject**.
* :func:`rollback_decision` compares a new champion with ``previous`` on the same kind of rows
  (the previous model's rows re-weighted to the champion's ``ocean_proximity`` mix) and says
  **rollback** or **keep**.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field, field_validator

from housing_platform.core.schema import CATEGORICAL_COLUMN, TARGET_COLUMN

DIRECT, SHADOW, CANARY = "direct", "shadow", "canary"
ROLLOUT_MODES = (DIRECT, SHADOW, CANARY)
PROMOTE, WAIT, REJECT = "promote", "wait", "reject"
ROLLBACK, KEEP = "rollback", "keep"
INCOME_COLUMN = "median_income"
LABEL, PREDICTION = TARGET_COLUMN, "prediction"
CHAMPION_PREDICTION, CHALLENGER_PREDICTION = "champion_prediction", "challenger_prediction"


class RolloutError(ValueError):
    """A rollout setting that breaks its rule (the message names the field, the rule and the value)."""


def validate_mode(mode: str) -> str:
    if mode not in ROLLOUT_MODES:
        raise RolloutError(f"rollout must be one of {', '.join(ROLLOUT_MODES)}, got {mode!r}")
    return mode


def validate_share(share: float) -> float:
    """A canary share is a fraction strictly between 0 and 1 (0 would never decide, 1 is a direct promotion)."""
    try:
        value = float(share)
    except (TypeError, ValueError):
        raise RolloutError(f"rollout_share must be a number between 0 and 1 (exclusive), got {share!r}") from None
    if not (math.isfinite(value) and 0.0 < value < 1.0):
        raise RolloutError(f"rollout_share must be between 0 and 1 (exclusive), got {share!r}")
    return value


class RolloutConfig(BaseModel):
    """Every rollout and rollback limit, in one place (run config of the registry and monitoring assets)."""

    mode: str = Field(
        CANARY, description="How a version that passed the gate goes live: direct | shadow | canary."
    )
    share: float = Field(0.1, description="Canary: the fraction of rows the challenger answers (0 < share < 1).")
    min_labelled_rows: int = Field(
        200, description="Labelled rows each model needs before the comparison may decide anything but wait."
    )
    non_inferiority_margin: float = Field(
        0.02,
        description="Promote when the upper confidence bound of the challenger's relative RMSE difference "
        "is below this; reject when its lower bound is above it.",
    )
    confidence: float = Field(0.95, description="Two-sided confidence level of the bootstrap intervals.")
    power: float = Field(0.8, description="Power the 'how many more labelled rows' calculation plans for.")
    bootstrap_resamples: int = Field(1_000, description="Bootstrap resamples per interval.")
    seed: int = Field(0, description="Seed of the bootstrap (the same data gives the same interval).")
    max_slice_regression: float = Field(
        0.15, description="No slice (ocean_proximity, income quintile) may be worse than the champion by more."
    )
    min_slice_rows: int = Field(50, description="Slices with fewer labelled rows per model are reported, not judged.")
    max_error_rate: float = Field(0.01, description="Largest acceptable share of rows a model failed to answer.")
    max_p99_latency_ratio: float = Field(
        1.5, description="The challenger's (or new champion's) p99 latency may be at most this multiple of the other's."
    )
    min_p99_latency_ms: float = Field(
        5.0, description="p99 latencies below this are never a reason to reject or roll back (timer noise)."
    )
    min_latency_requests: int = Field(
        100, description="Requests each model needs before its p99 latency is judged (one slow cold request "
        "is not a p99)."
    )
    max_wait_days: float = Field(7.0, description="A challenger still undecided after this many days is rejected.")
    rollback_margin: float = Field(
        0.05,
        description="Roll back when the new champion's RMSE exceeds previous's on the same kind of rows by more "
        "than this fraction, at the lower confidence bound.",
    )
    baking_hours: float = Field(24.0, description="How long after a promotion the rollback check keeps watching.")

    @field_validator("mode")
    @classmethod
    def _known_mode(cls, value: str) -> str:
        return validate_mode(value)

    @field_validator("share")
    @classmethod
    def _share_in_range(cls, value: float) -> float:
        return validate_share(value)


@dataclass(frozen=True)
class SliceResult:
    slice_by: str
    value: str
    rows_champion: int
    rows_challenger: int
    rmse_champion: float
    rmse_challenger: float

    @property
    def ratio(self) -> float:
        return self.rmse_challenger / self.rmse_champion if self.rmse_champion > 0 else float("inf")


@dataclass(frozen=True)
class Comparison:
    """Challenger vs champion on labelled rows: relative RMSE difference with its bootstrap interval."""

    kind: str  # "paired" (shadow) or "two-sample" (canary, rollback)
    rows_champion: int
    rows_challenger: int
    rmse_champion: float
    rmse_challenger: float
    lower: float  # confidence interval of rmse_challenger / rmse_champion - 1
    upper: float
    standard_error: float
    confidence: float
    slices: list[SliceResult] = field(default_factory=list)
    divergence_dollars: float | None = None  # paired only: RMS of the two models' prediction difference

    @property
    def difference(self) -> float:
        return self.rmse_challenger / self.rmse_champion - 1.0 if self.rmse_champion > 0 else float("inf")

    @property
    def rows(self) -> int:
        return min(self.rows_champion, self.rows_challenger)

    def describe(self) -> str:
        return (f"challenger RMSE ${self.rmse_challenger:,.0f} vs champion ${self.rmse_champion:,.0f} "
                f"({self.difference:+.1%}, {self.confidence:.0%} CI {self.lower:+.1%} to {self.upper:+.1%}; "
                f"{self.kind}, {self.rows_challenger:,} / {self.rows_champion:,} labelled rows)")


@dataclass(frozen=True)
class Operations:
    """One model's live operational figures over the compared window."""

    rows: int  # rows it was asked to score
    errors: int  # of those, rows it failed to answer (non-finite or raised)
    p99_latency_ms: float  # over requests (a request's rows share its latency)
    requests: int = 0  # requests the p99 is taken over

    @property
    def error_rate(self) -> float:
        return self.errors / self.rows if self.rows else 0.0


@dataclass(frozen=True)
class Decision:
    outcome: str  # PROMOTE | WAIT | REJECT, or ROLLBACK | KEEP
    reason: str
    more_rows_needed: int = 0  # WAIT: labelled rows per model a power calculation asks for
    comparison: Comparison | None = None

    def evidence(self) -> dict[str, float | int | str]:
        """Flat numbers for tags and metadata."""
        out: dict[str, float | int | str] = {"outcome": self.outcome, "reason": self.reason}
        if self.outcome == WAIT:
            out["more_rows_needed"] = self.more_rows_needed
        c = self.comparison
        if c is not None:
            out.update(kind=c.kind, rows_champion=c.rows_champion, rows_challenger=c.rows_challenger,
                       rmse_champion=round(c.rmse_champion, 2), rmse_challenger=round(c.rmse_challenger, 2),
                       difference=round(c.difference, 5), ci_lower=round(c.lower, 5), ci_upper=round(c.upper, 5))
        return out


# -- comparisons ------------------------------------------------------------------------------------------
def _rmse(squared: np.ndarray, weights: np.ndarray | None = None) -> float:
    if len(squared) == 0:
        return float("nan")
    return float(np.sqrt(np.average(squared, weights=weights)))


def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def _income_edges(*incomes: np.ndarray) -> np.ndarray:
    values = np.concatenate([np.asarray(i, dtype=float) for i in incomes])
    return np.quantile(values, [0.2, 0.4, 0.6, 0.8]) if len(values) else np.array([])


def _slice_keys(frame: pd.DataFrame, edges: np.ndarray) -> dict[str, np.ndarray]:
    keys = {CATEGORICAL_COLUMN: frame[CATEGORICAL_COLUMN].astype(str).to_numpy()}
    if INCOME_COLUMN in frame.columns and len(edges):
        quintile = np.searchsorted(edges, frame[INCOME_COLUMN].to_numpy(dtype=float), side="right") + 1
        keys[f"{INCOME_COLUMN}_quintile"] = np.array([f"Q{q}" for q in quintile])
    return keys


def _slices(champion: pd.DataFrame, challenger: pd.DataFrame, sq_champion: np.ndarray,
            sq_challenger: np.ndarray) -> list[SliceResult]:
    edges = _income_edges(champion.get(INCOME_COLUMN, pd.Series(dtype=float)),
                          challenger.get(INCOME_COLUMN, pd.Series(dtype=float)))
    keys_a, keys_b = _slice_keys(champion, edges), _slice_keys(challenger, edges)
    results = []
    for slice_by, values_a in keys_a.items():
        values_b = keys_b[slice_by]
        for value in sorted(set(values_a) | set(values_b)):
            in_a, in_b = values_a == value, values_b == value
            results.append(SliceResult(slice_by, value, int(in_a.sum()), int(in_b.sum()),
                                       _rmse(sq_champion[in_a]), _rmse(sq_challenger[in_b])))
    return results


def _interval(samples: np.ndarray, confidence: float) -> tuple[float, float, float]:
    alpha = (1.0 - confidence) / 2.0
    lower, upper = np.quantile(samples, [alpha, 1.0 - alpha])
    return float(lower), float(upper), float(np.std(samples, ddof=1)) if len(samples) > 1 else float("inf")


def _resample_means(squared: np.ndarray, rng: np.random.Generator, resamples: int,
                    weights: np.ndarray | None = None) -> np.ndarray:
    """Bootstrap means of ``squared`` (weighted), in chunks so memory stays ~8 MB whatever the row count."""
    n = len(squared)
    chunk = max(1, 1_000_000 // max(n, 1))
    out = np.empty(resamples)
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        index = rng.integers(0, n, size=(stop - start, n))
        if weights is None:
            out[start:stop] = squared[index].mean(axis=1)
        else:
            w = weights[index]
            out[start:stop] = (squared[index] * w).sum(axis=1) / w.sum(axis=1)
    return out


def compare_paired(frame: pd.DataFrame, config: RolloutConfig | None = None) -> Comparison:
    """Shadow: champion and challenger scored the same labelled rows (columns :data:`CHAMPION_PREDICTION`,
    :data:`CHALLENGER_PREDICTION`, the label, ``ocean_proximity``, ``median_income``). Rows are resampled
    together, so the interval reflects only the difference between the models, not between the rows."""
    config = config or RolloutConfig()
    label = frame[LABEL].to_numpy(dtype=float)
    champion = frame[CHAMPION_PREDICTION].to_numpy(dtype=float)
    challenger = frame[CHALLENGER_PREDICTION].to_numpy(dtype=float)
    sq_a, sq_b = (label - champion) ** 2, (label - challenger) ** 2
    n = len(frame)
    nan = float("nan")
    if n < 2:
        return Comparison("paired", n, n, _rmse(sq_a), _rmse(sq_b), nan, nan, float("inf"), config.confidence)
    rng = np.random.default_rng(config.seed)
    samples = np.empty(config.bootstrap_resamples)
    chunk = max(1, 1_000_000 // n)
    for start in range(0, config.bootstrap_resamples, chunk):
        stop = min(config.bootstrap_resamples, start + chunk)
        index = rng.integers(0, n, size=(stop - start, n))
        samples[start:stop] = np.sqrt(sq_b[index].mean(axis=1) / sq_a[index].mean(axis=1)) - 1.0
    lower, upper, se = _interval(samples, config.confidence)
    divergence = float(np.sqrt(np.mean((challenger - champion) ** 2)))
    return Comparison("paired", n, n, _rmse(sq_a), _rmse(sq_b), lower, upper, se, config.confidence,
                      _slices(frame, frame, sq_a, sq_b), divergence)


def compare_two_sample(champion: pd.DataFrame, challenger: pd.DataFrame, config: RolloutConfig | None = None,
                       *, same_mix: bool = False) -> Comparison:
    """Canary (and rollback): each model answered its own labelled rows (columns ``prediction``, the label,
    ``ocean_proximity``, ``median_income``); each side is resampled on its own.

    ``same_mix``: re-weight the champion side's rows to the challenger side's ``ocean_proximity`` mix, so two
    windows of traffic with different districts compare like with like (categories absent on either side
    are left out)."""
    config = config or RolloutConfig()
    sq_a = (champion[LABEL].to_numpy(dtype=float) - champion[PREDICTION].to_numpy(dtype=float)) ** 2
    sq_b = (challenger[LABEL].to_numpy(dtype=float) - challenger[PREDICTION].to_numpy(dtype=float)) ** 2
    weights = None
    if same_mix and len(champion) and len(challenger):
        cat_a = champion[CATEGORICAL_COLUMN].astype(str).to_numpy()
        cat_b = challenger[CATEGORICAL_COLUMN].astype(str).to_numpy()
        share_a = pd.Series(cat_a).value_counts(normalize=True)
        share_b = pd.Series(cat_b).value_counts(normalize=True)
        common = share_a.index.intersection(share_b.index)
        keep_a, keep_b = np.isin(cat_a, common), np.isin(cat_b, common)
        champion, challenger = champion[keep_a], challenger[keep_b]
        sq_a, sq_b, cat_a = sq_a[keep_a], sq_b[keep_b], cat_a[keep_a]
        ratio = (share_b[common] / share_b[common].sum()) / (share_a[common] / share_a[common].sum())
        weights = ratio.reindex(cat_a).to_numpy(dtype=float)
    n_a, n_b = len(sq_a), len(sq_b)
    rmse_a, rmse_b = _rmse(sq_a, weights), _rmse(sq_b)
    nan = float("nan")
    if n_a < 2 or n_b < 2:
        return Comparison("two-sample", n_a, n_b, rmse_a, rmse_b, nan, nan, float("inf"), config.confidence)
    rng = np.random.default_rng(config.seed)
    means_a = _resample_means(sq_a, rng, config.bootstrap_resamples, weights)
    means_b = _resample_means(sq_b, rng, config.bootstrap_resamples)
    lower, upper, se = _interval(np.sqrt(means_b / means_a) - 1.0, config.confidence)
    return Comparison("two-sample", n_a, n_b, rmse_a, rmse_b, lower, upper, se, config.confidence,
                      _slices(champion, challenger, sq_a, sq_b))


# -- decisions --------------------------------------------------------------------------------------------
def more_rows_needed(comparison: Comparison, margin: float, config: RolloutConfig) -> int:
    """Labelled rows per model still needed for the interval to fall clear of ``margin`` with the configured
    confidence and power, assuming the observed difference is the true one and the standard error shrinks
    as 1/sqrt(n) (a normal approximation to the bootstrap). Below the minimum: at least the rows it lacks."""
    short = max(0, config.min_labelled_rows - comparison.rows)
    if comparison.rows < 2 or not math.isfinite(comparison.standard_error):
        return max(short, config.min_labelled_rows)
    distance = abs(margin - comparison.difference)
    z = _z(config.confidence) + NormalDist().inv_cdf(config.power)
    sd_one_row = comparison.standard_error * math.sqrt(comparison.rows)
    needed = math.ceil((z * sd_one_row / max(distance, 1e-3)) ** 2)  # a tie asks for a bounded, large number
    return max(short, needed - comparison.rows, 1)


def _operations_problem(champion: Operations, challenger: Operations, config: RolloutConfig,
                        who: str, other: str) -> str | None:
    if challenger.rows and challenger.error_rate > config.max_error_rate:
        return (f"{who} error rate {challenger.error_rate:.2%} ({challenger.errors:,} of {challenger.rows:,} rows) "
                f"above the limit {config.max_error_rate:.2%}")
    limit = max(config.min_p99_latency_ms, config.max_p99_latency_ratio * champion.p99_latency_ms)
    judged = min(challenger.requests, champion.requests) >= config.min_latency_requests
    if judged and challenger.p99_latency_ms > limit:
        return (f"{who} p99 latency {challenger.p99_latency_ms:.2f} ms above {limit:.2f} ms "
                f"({config.max_p99_latency_ratio:g}x {other}'s {champion.p99_latency_ms:.2f} ms)")
    return None


def _weak_slice(comparison: Comparison, config: RolloutConfig) -> SliceResult | None:
    judged = [s for s in comparison.slices if min(s.rows_champion, s.rows_challenger) >= config.min_slice_rows]
    worst = max(judged, key=lambda s: s.ratio, default=None)
    return worst if worst is not None and worst.ratio > 1.0 + config.max_slice_regression else None


def rollout_decision(comparison: Comparison, champion_ops: Operations, challenger_ops: Operations,
                     waited_days: float, config: RolloutConfig | None = None) -> Decision:
    """Promote, wait or reject a challenger (see the module docstring); the reason names the numbers."""
    config = config or RolloutConfig()
    problem = _operations_problem(champion_ops, challenger_ops, config, "challenger", "the champion")
    if problem:
        return Decision(REJECT, problem, comparison=comparison)
    margin = config.non_inferiority_margin
    enough = comparison.rows >= config.min_labelled_rows
    if enough and comparison.lower > margin:
        return Decision(REJECT, f"worse than the champion beyond the {margin:.0%} margin: {comparison.describe()}",
                        comparison=comparison)
    weak = _weak_slice(comparison, config) if enough else None
    if weak is not None:
        return Decision(REJECT, (f"slice {weak.slice_by}={weak.value} regresses: RMSE ${weak.rmse_challenger:,.0f} vs "
                                 f"${weak.rmse_champion:,.0f} ({weak.ratio - 1:+.1%}, limit "
                                 f"+{config.max_slice_regression:.0%})"), comparison=comparison)
    if enough and comparison.upper < margin:
        return Decision(PROMOTE, f"not worse than the champion (margin {margin:.0%}): {comparison.describe()}",
                        comparison=comparison)
    needed = more_rows_needed(comparison, margin, config)
    if waited_days >= config.max_wait_days:
        return Decision(REJECT, (f"undecided after {waited_days:.1f} days (cap {config.max_wait_days:g}); "
                                 f"{needed:,} more labelled rows per model would be needed"), comparison=comparison)
    if not enough:
        reason = f"{comparison.rows:,} labelled rows per model, at least {config.min_labelled_rows:,} needed"
    else:
        reason = f"the interval still straddles the {margin:.0%} margin: {comparison.describe()}"
    return Decision(WAIT, f"{reason}; about {needed:,} more labelled rows per model", needed, comparison)


def rollback_decision(new_champion: pd.DataFrame, previous: pd.DataFrame, champion_ops: Operations,
                      previous_ops: Operations, config: RolloutConfig | None = None) -> Decision:
    """Roll back when the new champion's live quality is worse than ``previous`` was on the same kind of rows
    beyond :attr:`RolloutConfig.rollback_margin` at the lower confidence bound, or on error rate or p99."""
    config = config or RolloutConfig()
    problem = _operations_problem(previous_ops, champion_ops, config, "champion", "previous")
    comparison = compare_two_sample(previous, new_champion, config, same_mix=True)
    if problem:
        return Decision(ROLLBACK, problem, comparison=comparison)
    if comparison.rows < config.min_labelled_rows:
        return Decision(KEEP, (f"{comparison.rows:,} labelled rows per model, at least {config.min_labelled_rows:,} "
                               "needed to judge"), more_rows_needed(comparison, config.rollback_margin, config),
                        comparison)
    text = comparison.describe().replace("challenger", "champion").replace("vs champion", "vs previous")
    if comparison.lower > config.rollback_margin:
        return Decision(ROLLBACK, f"worse than previous beyond the {config.rollback_margin:.0%} margin: {text}",
                        comparison=comparison)
    return Decision(KEEP, f"within the {config.rollback_margin:.0%} margin of previous: {text}", comparison=comparison)
