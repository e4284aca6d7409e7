"""Feature and prediction drift between a reference table and the current traffic, with one verdict.

Plain Python on top of Evidently 0.7 (the new ``evidently.Report`` API); it knows nothing of Dagster or
MLflow. The daily ``drift_report`` asset calls :func:`compute_drift` and
:meth:`DriftResult.write_reports`; the benchmark ``benchmarks/drift.py`` measures it.

What is compared
    The nine model features (:data:`~housing_platform.core.schema.FEATURE_COLUMNS`) and the model's
    prediction column. Columns are declared to Evidently explicitly — the eight numeric features and
    the prediction as numerical, ``ocean_proximity`` as categorical — so a low-cardinality integer column
    is never guessed to be categorical. Other columns (the target, ids) are ignored.

How a column drifts
    Numerical columns: Wasserstein distance normed by the reference's standard deviation, drift when
    ``>= 0.1``. Categorical: Jensen-Shannon distance, drift when ``>= 0.1``. These are exactly what
    Evidently picks by default for a reference of more than 1,000 rows; they are pinned here because
    Evidently's automatic choice switches to p-value tests (Kolmogorov-Smirnov, chi-squared) for a
    reference of 1,000 rows or fewer, and a p-value test flags ever smaller, practically irrelevant
    differences as the current sample grows. A distance measures *how much* the distribution moved,
    which is what makes sampling (below) safe. Both are configurable in :class:`DriftConfig`.

    The one place where the sample size matters is at the small end: two samples of one distribution
    are a nonzero distance apart, and for a few hundred current rows that noise exceeds 0.1 (a quarter
    of stable 200-row days alarmed in the benchmark). So each column's threshold is raised to its *noise
    floor*, the 99th percentile of the distance between a random part of the reference of the current
    size and the rest (see :func:`_thresholds`). From about 1,000 current rows on the floor is below
    0.1 and Evidently's threshold applies unchanged. The table's ``threshold`` is the one applied.

The verdict (the rules are in :mod:`~housing_platform.core.drift_rules`)
    * ``"insufficient data"`` when the current table has fewer than ``min_rows`` rows: nothing is
      computed and the check passes — a quiet day must not raise a false alarm.
    * ``"drift"`` when the check fails: any of four rules fired — the share of drifted features is
      ``>= drift_share`` (Evidently's dataset-drift rule), a key feature drifted, one feature's score
      reached ``severe_drift_multiple`` times its threshold, or the prediction drifted. ``rules_fired``
      names them and ``reason`` gives each one's numbers.
    * ``"no drift"`` otherwise.

Sampling (speed on large days)
    Evidently takes ~14 s for a million current rows on two cores, most of it per-row work that adds
    nothing: the distances converge long before that. When the current (or the reference) table has
    more than ``max_rows`` rows (default 50,000), a uniform random sample of ``max_rows`` rows without
    replacement is compared instead, drawn by ``numpy.random.default_rng`` seeded from
    ``DriftConfig.seed``, so a rerun on the same data gives the same result. ``benchmarks/drift.py``
    compares sampled and unsampled runs on the same tables of 100,000 and 1,000,000 rows for every
    scenario: the verdicts and every column's flag agreed, and the scores differed by at most 0.013,
    where the closest score was 0.037 away from its threshold. ``max_rows=None`` switches sampling off.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from evidently.core.report import Snapshot
from pydantic import BaseModel, ConfigDict, Field, model_validator

from housing_platform.core.drift_evidently import (  # TABLE_COLUMNS: the columns of DriftResult.table
    TABLE_COLUMNS,  # noqa: F401
    drift_table,
    run_evidently_report,
    typed_table,
)
from housing_platform.core.drift_noise_floor import FLOOR_KINDS, noise_floors
from housing_platform.core.drift_report_html import evidently_headline, write_drift_html
from housing_platform.core.drift_rules import Judgement, judge, nothing_judged
from housing_platform.core.drift_verdict import DriftVerdict, drift_verdict
from housing_platform.core.schema import CATEGORICAL_COLUMN, FEATURE_COLUMNS, NUMERIC_FEATURE_COLUMNS

VERDICT_DRIFT = "drift"
VERDICT_NO_DRIFT = "no drift"
VERDICT_INSUFFICIENT_DATA = "insufficient data"
VERDICTS = (VERDICT_DRIFT, VERDICT_NO_DRIFT, VERDICT_INSUFFICIENT_DATA)
JSON_SUMMARY_KEY = "housing_platform_drift"  # our verdict, added beside Evidently's "metrics" and "tests"



class DriftConfig(BaseModel):
    """How much data is enough, how drift is measured and what fails the check."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_rows: int = Field(
        200, ge=1, description="Below this many current rows the verdict is 'insufficient data' and the check passes."
    )
    max_rows: int | None = Field(
        50_000,
        ge=1,
        description="Tables with more rows are compared on a seeded uniform sample of this many rows; None = never.",
    )
    seed: int = Field(0, description="Seed of the row sampling and of the noise-floor draws.")
    drift_share: float = Field(
        0.5, gt=0, le=1, description="Dataset drift when at least this share of the features drifted."
    )
    key_features: tuple[str, ...] = Field(
        ("median_income",), description="Drift in any of these columns fails the check on its own."
    )
    numerical_method: str = Field("wasserstein", description="Evidently drift method for numerical columns.")
    numerical_threshold: float = Field(0.1, description="Drift threshold of numerical_method (normed distance).")
    categorical_method: str = Field("jensenshannon", description="Evidently drift method for ocean_proximity.")
    categorical_threshold: float = Field(0.1, description="Drift threshold of categorical_method (distance).")
    per_column_method: dict[str, str] = Field(default_factory=dict, description="Method overrides by column.")
    per_column_threshold: dict[str, float] = Field(default_factory=dict, description="Threshold overrides by column.")
    noise_floor_quantile: float | None = Field(
        0.99,
        gt=0,
        lt=1,
        description="Raise a column's threshold to this quantile of its distance between two same-distribution "
        "samples of the current size (split from the reference), so sampling noise on small days does not "
        "alarm; None = off. Applies to wasserstein (numerical) and jensenshannon (categorical) only.",
    )
    noise_floor_draws: int = Field(500, ge=50, description="Random splits of the reference behind the noise floor.")
    severe_drift_multiple: float | None = Field(
        3.0,
        ge=1,
        description="A single feature whose score reaches this multiple of its threshold (the larger of the "
        "configured one and its noise floor) fails the check on its own, key feature or not: a feature that "
        "changed scale or meaning. None = off. Judged for wasserstein and jensenshannon scores.",
    )
    fail_on_prediction_drift: bool = Field(
        True,
        description="Drift of the prediction's distribution (its threshold: numerical_threshold raised to its "
        "noise floor) fails the check on its own.",
    )

    @model_validator(mode="after")
    def _max_rows_not_below_min_rows(self) -> "DriftConfig":
        if self.max_rows is not None and self.max_rows < self.min_rows:
            raise ValueError(f"max_rows ({self.max_rows}) must be >= min_rows ({self.min_rows})")
        return self


@dataclass
class DriftResult:
    """The outcome of :func:`compute_drift`: a per-column table, the verdict and the Evidently snapshot."""

    verdict: str
    check_passed: bool
    reason: str
    table: pd.DataFrame  # one row per compared column: TABLE_COLUMNS; empty on insufficient data
    dataset_drift: bool
    drifted_share: float  # drifted features / features (the prediction is not counted)
    drifted_columns: list[str]  # drifted features, in FEATURE_COLUMNS order (the prediction is not listed)
    key_feature_drift: list[str]
    severe_feature_drift: list[str]  # features at or above their severe threshold
    severe_thresholds: dict[str, float]  # per feature judged by the severe rule
    noise_floors: dict[str, float]  # per column with a known floor: the distance sampling noise alone reaches
    prediction_drift: bool | None  # None when no prediction column was given or nothing was computed
    rules_fired: list[str]  # drift_rules.RULES that failed the check; empty when it passed
    reference_rows: int
    current_rows: int
    compared_reference_rows: int  # after sampling; 0 when nothing was computed
    compared_current_rows: int
    config: DriftConfig
    snapshot: Snapshot | None = field(default=None, repr=False)  # None on insufficient data

    def summary(self) -> dict[str, Any]:
        """JSON-friendly verdict and figures, e.g. for asset metadata or the JSON report."""
        return {
            "verdict": self.verdict,
            "check_passed": self.check_passed,
            "reason": self.reason,
            "dataset_drift": self.dataset_drift,
            "drifted_share": self.drifted_share,
            "drift_share_threshold": self.config.drift_share,
            "drifted_columns": list(self.drifted_columns),
            "key_features": list(self.config.key_features),
            "key_feature_drift": list(self.key_feature_drift),
            "severe_feature_drift": list(self.severe_feature_drift),
            "severe_drift_multiple": self.config.severe_drift_multiple,
            "prediction_drift": self.prediction_drift,
            "rules_fired": list(self.rules_fired),
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "compared_reference_rows": self.compared_reference_rows,
            "compared_current_rows": self.compared_current_rows,
            "config": self.config.model_dump(mode="json"),
            "table": [
                {"column": column, "method": method, "score": score, "threshold": threshold,
                 "noise_floor": self.noise_floors.get(column),
                 "severe_threshold": self.severe_thresholds.get(column), "drifted": drifted}
                for column, method, score, threshold, drifted in zip(
                    self.table["column"],
                    self.table["method"],
                    self.table["score"].astype(float).tolist(),
                    self.table["threshold"].astype(float).tolist(),
                    self.table["drifted"].astype(bool).tolist(),
                )
            ],
        }

    def platform_verdict(self) -> DriftVerdict:
        """The platform's verdict in words (:mod:`~housing_platform.core.drift_verdict`): the HTML's head and
        the asset's Markdown metadata."""
        return drift_verdict(self.summary())

    def write_reports(self, html_path: str | Path, json_path: str | Path) -> tuple[Path, Path]:
        """Write the day's HTML (the platform's verdict, then Evidently's detail) and its JSON.

        The HTML is :func:`~housing_platform.core.drift_report_html.write_drift_html`: small (Evidently's
        viewer is shared beside it in ``js/``) and opening with :meth:`platform_verdict`. The JSON keeps the full
        metrics: Evidently's ``Snapshot.dict()`` (keys ``metrics`` and ``tests``) with one more key,
        ``housing_platform_drift``, holding :meth:`summary`. With insufficient data there is no
        snapshot: the HTML states the verdict only and the JSON has empty ``metrics`` and ``tests``.
        Parent folders are created.
        """
        html_path, json_path = Path(html_path), Path(json_path)
        for path in (html_path, json_path):
            path.parent.mkdir(parents=True, exist_ok=True)
        summary = self.summary()
        verdict = drift_verdict(summary)
        write_drift_html(html_path, verdict, self.snapshot, evidently_headline(summary, verdict))
        if self.snapshot is not None:
            payload = json.loads(self.snapshot.json())  # Evidently's own encoder (enums, numpy values)
        else:
            payload = {"metrics": [], "tests": []}
        payload[JSON_SUMMARY_KEY] = summary
        json_path.write_text(json.dumps(payload, indent=1), encoding="utf-8")
        return html_path, json_path


def compute_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    config: DriftConfig | None = None,
    prediction_column: str | None = "prediction",
) -> DriftResult:
    """Compare ``current`` with ``reference`` on the features and ``prediction_column`` (see the module doc).

    Both tables need every feature column and the prediction column (pass ``prediction_column=None`` to
    compare features only); other columns are ignored. Neither table is modified.

    Raises ``ValueError`` when a column is missing, a key feature is not a compared column, or the
    reference has fewer than ``min_rows`` rows (a reference that small is a configuration error, not a
    quiet day, so it is not reported as "insufficient data").
    """
    config = config or DriftConfig()
    if prediction_column in FEATURE_COLUMNS:
        raise ValueError(f"prediction_column '{prediction_column}' is a feature; name the model's output column")
    columns = [*FEATURE_COLUMNS, *([prediction_column] if prediction_column else [])]
    # A day without any traffic may come as a table without columns: that is no data, not a bad table.
    tables = (("reference", reference), ("current", current)) if len(current) else (("reference", reference),)
    for name, frame in tables:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"the {name} table lacks the column(s) {', '.join(missing)} needed for drift")
    unknown = [c for c in config.key_features if c not in columns]
    if unknown:
        raise ValueError(f"key_features {unknown} are not compared columns; choose from {columns}")
    overridden = [c for c in (*config.per_column_method, *config.per_column_threshold) if c not in columns]
    if overridden:
        raise ValueError(f"per-column overrides name {sorted(set(overridden))}, not compared columns {columns}")
    if len(reference) < config.min_rows:
        raise ValueError(f"the reference table has {len(reference):,} rows, fewer than min_rows={config.min_rows:,}")
    if len(current) < config.min_rows:
        return _insufficient_data(len(reference), len(current), config)

    reference_sample = _prepare(_sample(reference, config.max_rows, (config.seed, 1)), columns, prediction_column)
    current_sample = _prepare(_sample(current, config.max_rows, (config.seed, 0)), columns, prediction_column)
    methods = _methods(columns, config)
    thresholds, floors = _thresholds(reference_sample, current_sample, methods, config)
    snapshot = run_evidently_report(
        reference_sample, current_sample, methods, thresholds, config.drift_share, prediction_column
    )
    table = drift_table(snapshot, columns)
    judgement = judge(
        table,
        drift_share=config.drift_share,
        key_features=config.key_features,
        severe_drift_multiple=config.severe_drift_multiple,
        fail_on_prediction_drift=config.fail_on_prediction_drift,
        prediction_column=prediction_column,
    )
    return DriftResult(
        verdict=VERDICT_NO_DRIFT if judgement.check_passed else VERDICT_DRIFT,
        check_passed=judgement.check_passed,
        reason=judgement.reason,
        table=table,
        **_judged(judgement),
        noise_floors=floors,
        reference_rows=len(reference),
        current_rows=len(current),
        compared_reference_rows=len(reference_sample),
        compared_current_rows=len(current_sample),
        config=config,
        snapshot=snapshot,
    )


def _sample(frame: pd.DataFrame, max_rows: int | None, seed: tuple[int, int]) -> pd.DataFrame:
    """A uniform sample of ``max_rows`` rows without replacement (``frame`` itself when small enough).

    Rows are picked by position first and only those are copied, so a million-row table is never
    copied whole. The positions are sorted for memory locality: row order does not enter any distance.
    """
    if max_rows is None or len(frame) <= max_rows:
        return frame
    positions = np.random.default_rng(list(seed)).choice(len(frame), size=max_rows, replace=False)
    return frame.iloc[np.sort(positions)]


def _prepare(frame: pd.DataFrame, columns: list[str], prediction_column: str | None) -> pd.DataFrame:
    """Only the compared columns, numerical ones as float64 and the category as plain strings."""
    out = frame.loc[:, columns].reset_index(drop=True)
    numerical = [*NUMERIC_FEATURE_COLUMNS, *([prediction_column] if prediction_column else [])]
    for column in numerical:
        try:
            out[column] = out[column].astype("float64")
        except (TypeError, ValueError) as error:
            raise ValueError(f"column '{column}' must be numeric for drift: {error}") from None
    out[CATEGORICAL_COLUMN] = out[CATEGORICAL_COLUMN].astype(object)
    return out


def _methods(columns: list[str], config: DriftConfig) -> dict[str, str]:
    def default(column: str) -> str:
        return config.categorical_method if column == CATEGORICAL_COLUMN else config.numerical_method

    return {c: config.per_column_method.get(c, default(c)) for c in columns}


def _thresholds(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    methods: dict[str, str],
    config: DriftConfig,
) -> tuple[dict[str, float], dict[str, float]]:
    """The configured threshold of each column, raised to its noise floor at the current sample size; and the floors.

    A distance between two finite samples of one distribution is not zero: for the normed Wasserstein
    distance it is about 0.19 at the 99th percentile for 200 current rows against 5,000 reference rows,
    about 0.09 for 1,000 and 0.04 for 50,000. Against the fixed threshold of 0.1, a day of a few hundred
    rows would then alarm on noise alone (a quarter of stable 200-row days did, in the benchmark). The
    noise floor is that quantile, estimated by splitting the (sampled) reference at random into a part
    of the current size and the rest, ``noise_floor_draws`` times (seeded). From about 1,000 current rows
    on it is below the configured threshold, which then applies unchanged.
    """

    def configured(column: str) -> float:
        default = config.categorical_threshold if column == CATEGORICAL_COLUMN else config.numerical_threshold
        return config.per_column_threshold.get(column, default)

    thresholds = {column: configured(column) for column in methods}
    if config.noise_floor_quantile is None:
        return thresholds, {}
    kinds = {}
    for column, method in methods.items():
        kind = FLOOR_KINDS.get((column == CATEGORICAL_COLUMN, method))
        if kind is not None:  # p-value tests account for the sample size themselves: no floor
            kinds[column] = kind
    floors = noise_floors(
        reference, current, kinds, seed=config.seed, draws=config.noise_floor_draws, quantile=config.noise_floor_quantile
    )
    floors = {column: round(floor, 4) for column, floor in floors.items()}
    for column, floor in floors.items():
        thresholds[column] = max(thresholds[column], floor)
    return thresholds, floors


def _judged(judgement: Judgement) -> dict[str, Any]:
    """The judgement's figures, as DriftResult fields."""
    names = ("dataset_drift", "drifted_share", "drifted_columns", "key_feature_drift", "severe_feature_drift",
             "severe_thresholds", "prediction_drift", "rules_fired")
    return {name: getattr(judgement, name) for name in names}


def _insufficient_data(reference_rows: int, current_rows: int, config: DriftConfig) -> DriftResult:
    return DriftResult(
        verdict=VERDICT_INSUFFICIENT_DATA,
        check_passed=True,
        reason=(
            f"{current_rows:,} current rows, fewer than min_rows={config.min_rows:,}: too few to judge drift, "
            "so nothing was compared and the check passes"
        ),
        table=typed_table([]),
        **_judged(nothing_judged()),
        noise_floors={},
        reference_rows=reference_rows,
        current_rows=current_rows,
        compared_reference_rows=0,
        compared_current_rows=0,
        config=config,
        snapshot=None,
    )
