"""Loading a registered version's fast path, and refusing it unless it scores like the pyfunc.

Equality with the registered model is a contract, not a hope: :func:`load_fast_scorer` loads the
pyfunc as any consumer would, derives its :class:`~housing_platform.scoring.scorer.FastScorer`, and
compares the two on :func:`probe_frame` rows (medians, every category, train extremes, an imputed
value). "Equal" means: on every row, the difference stays within that row's float32 error bound
(:func:`housing_platform.scoring.error_bound.skew_bound`: what the registered model's own float32
arithmetic may do in any summation order, plus the fast path's own rounding) — a bound that holds
on any x86-64 CPU, with oneDNN on or off and any thread count. A row outside it raises
:class:`~housing_platform.scoring.errors.SkewError` naming the row, its deviation and its bound, so
a model the port does not understand is never served wrongly: it fails loudly at load time. The
tests hold the port to the same bound on the whole test split.
"""

from __future__ import annotations

import math
import re
import tempfile
from dataclasses import dataclass

import numpy as np
import pandas as pd

from housing_platform.core.schema import (
    CATEGORICAL_COLUMN,
    FEATURE_COLUMNS,
    NUMERIC_FEATURE_COLUMNS,
)
from housing_platform.scoring.error_bound import skew_bound
from housing_platform.scoring.errors import ScoringError, SkewError
from housing_platform.scoring.integrity import verify_model_files
from housing_platform.scoring.scorer import FastScorer


@dataclass(frozen=True, eq=False)
class SkewCheck:
    """The fast path compared with the registered model, row by row, against each row's bound."""

    rows: int
    deviations: np.ndarray  # |fast - registered| per row, dollars (inf where exactly one side is NaN)
    bounds: np.ndarray  # the per-row bound (error_bound.SkewBound.total), dollars
    actual: np.ndarray  # the fast path's predictions
    expected: np.ndarray  # the registered model's predictions
    labels: tuple = ()  # the frame's index labels, to name a row

    @property
    def ratios(self) -> np.ndarray:
        """deviation / bound per row: at most 1 on every row for the fast path to be accepted."""
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = self.deviations / self.bounds
        # A bound that is not finite (an overflowing network) accepts nothing but equality.
        unusable = np.isnan(ratios) | ~np.isfinite(self.bounds)
        return np.where(self.deviations == 0, 0.0, np.where(unusable, np.inf, ratios))

    @property
    def worst_row(self) -> int:
        """Position of the row with the largest deviation / bound (0 when there are no rows)."""
        return int(np.argmax(self.ratios)) if self.rows else 0

    @property
    def worst_ratio(self) -> float:
        return float(self.ratios.max(initial=0.0))

    @property
    def rows_outside(self) -> int:
        return int((self.ratios > 1.0).sum())

    @property
    def passed(self) -> bool:
        return self.rows_outside == 0

    def describe(self) -> str:
        """One line naming the worst row, its deviation and its bound."""
        if not self.rows:
            return "no rows compared"
        i = self.worst_row
        label = self.labels[i] if len(self.labels) == self.rows else i
        return (
            f"row {label}: fast path ${self.actual[i]:,.2f} vs registered model ${self.expected[i]:,.2f}, "
            f"a difference of {_dollars(self.deviations[i])} against a float32 error bound of "
            f"{_dollars(self.bounds[i])} ({self.worst_ratio:.3g}x the bound; {self.rows_outside} of {self.rows} "
            f"rows outside their bound)"
        )


def _dollars(value: float) -> str:
    return f"${value:,.2f}" if abs(value) >= 1 else f"${value:.3g}"


def check_skew(scorer: FastScorer, frame: pd.DataFrame, actual, expected) -> SkewCheck:
    """Compare ``actual`` (the fast path's predictions for ``frame``) with ``expected`` (the registered
    model's) row by row against :func:`~housing_platform.scoring.error_bound.skew_bound` of ``scorer``."""
    actual = np.asarray(actual, dtype=np.float64).reshape(-1)
    expected = np.asarray(expected, dtype=np.float64).reshape(-1)
    if actual.shape != expected.shape or len(actual) != len(frame):
        raise SkewError(f"the fast path gave {actual.shape} predictions, the registered model {expected.shape}, "
                        f"for {len(frame)} rows")
    deviations = np.abs(actual - expected)
    both_nan = np.isnan(actual) & np.isnan(expected)
    deviations = np.where(both_nan, 0.0, np.where(np.isnan(deviations), np.inf, deviations))
    bounds = skew_bound(scorer, frame).total
    return SkewCheck(len(actual), deviations, bounds, actual, expected, tuple(frame.index))


def probe_frame(scorer: FastScorer) -> pd.DataFrame:
    """Rows to compare the fast path with the registered model on at load time.

    Train medians with every category, the train minimum and maximum of each numeric feature (when
    the version recorded them), and one row with a missing ``total_bedrooms`` (imputation). The
    index names each row, so a :class:`SkewError` says which one failed ("row train maxima: ...").
    """
    base = dict(zip(NUMERIC_FEATURE_COLUMNS, scorer.imputer_medians.tolist()))
    rows = [{**base, CATEGORICAL_COLUMN: c} for c in scorer.categories]
    names = [f"train medians, {c}" for c in scorer.categories]
    for bound in ("min", "max"):
        row = dict(base)
        for name in NUMERIC_FEATURE_COLUMNS:
            spec = scorer.feature_ranges.get(name) or {}
            if bound in spec:
                row[name] = float(spec[bound])
        rows.append({**row, CATEGORICAL_COLUMN: scorer.categories[0]})
        names.append(f"train {bound}ima")
    rows.append({**base, "total_bedrooms": np.nan, CATEGORICAL_COLUMN: scorer.categories[-1]})
    names.append("total_bedrooms missing")
    return pd.DataFrame(rows, columns=list(FEATURE_COLUMNS), index=pd.Index(names, name="probe"))


def verify_against(scorer: FastScorer, python_model, frame: pd.DataFrame | None = None) -> SkewCheck:
    """Compare the fast path with ``python_model.predict`` on ``frame`` (default: :func:`probe_frame`).

    Raises :class:`SkewError` (naming the worst row, its deviation and its bound) when any row lies
    outside its float32 error bound; returns the :class:`SkewCheck` otherwise.
    """
    frame = probe_frame(scorer) if frame is None else frame
    expected = np.asarray(python_model.predict(None, frame), dtype=np.float64).reshape(-1)
    check = check_skew(scorer, frame, scorer.score(frame), expected)
    if not check.passed:
        raise SkewError(f"the fast path differs from the registered model beyond float32 rounding: {check.describe()}")
    return check


def relative_difference(actual: np.ndarray, expected: np.ndarray) -> float:
    """max |a - e| / |e| (NaN on either side counts as an infinite difference unless both are NaN).

    A summary figure for benchmarks; the skew contract is :func:`check_skew`.
    """
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        return math.inf
    both_nan = np.isnan(actual) & np.isnan(expected)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(actual - expected) / np.maximum(np.abs(expected), np.finfo(np.float64).tiny)
    rel = np.where(both_nan, 0.0, np.where(np.isnan(rel), np.inf, rel))
    return float(rel.max(initial=0.0))


_REGISTERED_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


def registered_version_tags(model_uri: str) -> tuple[str, dict[str, str]] | None:
    """For a registered version's URI (``models:/name/N`` or ``models:/name@alias``): the concrete
    ``models:/name/N`` and the version's tags, from the registry MLflow is pointed at (the one that
    ``models:/`` URIs resolve through). None for any other URI (a local folder, ``runs:/``, a logged
    model's ``models:/m-…``): nothing was recorded for it, so there is nothing to check its files against.
    """
    import mlflow

    match = _REGISTERED_URI.match(model_uri.strip())
    if not match:
        return None
    client = mlflow.MlflowClient(tracking_uri=mlflow.get_tracking_uri(), registry_uri=mlflow.get_registry_uri())
    try:
        if match["alias"]:
            version = client.get_model_version_by_alias(match["name"], match["alias"])
        else:
            version = client.get_model_version(match["name"], match["version"])
    except Exception as error:  # MLflow raises several types for an unknown name, version or alias
        raise ScoringError(f"cannot load {model_uri}: {type(error).__name__}: {error}") from error
    return f"models:/{match['name']}/{version.version}", dict(version.tags)


def load_fast_scorer(model_uri: str, *, verify: bool = True, precision: str = "float64") -> FastScorer:
    """Load a registered version (a concrete ``models:/name/N`` URI) and derive its fast path.

    The version's files are downloaded and, for a registered version, checked against the sha256 the
    registry recorded at registration *before* anything in them is deserialised
    (:func:`~housing_platform.scoring.integrity.verify_model_files`; a changed, missing or added file
    raises :class:`~housing_platform.scoring.integrity.ArtifactIntegrityError` naming the file and both
    hashes). The pyfunc is then loaded from those very files as any consumer would
    (``mlflow.pyfunc.load_model``), its python model unwrapped and read into a :class:`FastScorer`;
    with ``verify`` (the default) the two are compared on :func:`probe_frame` rows and a
    :class:`SkewError` raised if any row lies outside its float32 error bound (:func:`verify_against`).
    """
    import mlflow

    registered = registered_version_tags(model_uri)
    source = registered[0] if registered is not None else model_uri  # an alias is read once, here
    with tempfile.TemporaryDirectory(prefix="housing-model-") as folder:
        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=folder)
        except Exception as error:  # MLflow raises several types for a missing or unreadable model
            raise ScoringError(f"cannot load {model_uri}: {type(error).__name__}: {error}") from error
        if registered is not None:
            verify_model_files(local, registered[1], source)
        try:
            pyfunc = mlflow.pyfunc.load_model(local)  # reads every file now; the folder can go afterwards
        except Exception as error:
            raise ScoringError(f"cannot load {model_uri}: {type(error).__name__}: {error}") from error
    python_model = pyfunc.unwrap_python_model()
    scorer = FastScorer.from_python_model(python_model, precision=precision)
    if verify:
        verify_against(scorer, python_model)
    return scorer
