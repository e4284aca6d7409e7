"""The promotion's second gate: the numpy fast path must score a registered version like its pyfunc.

`registered_model_version` registers the version without moving any alias, loads it back exactly as
the model server does (`load_fast_scorer`: `mlflow.pyfunc.load_model` + the fast path derived from the
unwrapped python model) and compares the two with :func:`verify_registered_version`, on the server's
probe rows and every row of the test split, in the server's precision and in batch scoring's. Only a
version whose every row lies within its float32 error bound (`scoring/error_bound.py`) becomes
`champion`; a refused one keeps its version number, is tagged `fast_path_verified=false` with the
reason, and leaves `champion` and `previous` where they were.

The verdict is the blocking check :data:`FAST_PATH_CHECK` of that asset, evaluated in the same step that
decides the promotion (so the evidence and the decision are one computation, on one loaded model), and
failing the run — downstream assets do not run — when the version is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg
import numpy as np
import pandas as pd

from housing_platform.core.model_gate import GateThresholds
from housing_platform.core.schema import FEATURE_COLUMNS
from housing_platform.defs.metadata import CHANGE, COUNT, DOLLARS, SCORE, number_metadata, numbers_metadata
from housing_platform.scoring.batch import BATCH_PRECISION
from housing_platform.scoring.errors import ScoringError
from housing_platform.scoring.verification import SkewCheck, check_skew, load_fast_scorer, probe_frame

FAST_PATH_CHECK = "fast_path_matches_registered_model"
FAST_PATH_DESCRIPTION = (
    "The numpy fast path the model server (and batch scoring) derives from the registered version scores "
    "every probe row and every test-split row like the registered pyfunc, within each row's float32 error "
    "bound (`scoring/error_bound.py`). Evaluated before any alias moves: a refused version is not made "
    "`champion` (the alias and `previous` stay), and is tagged `fast_path_verified=false` with the reason."
)
SERVER, BATCH = "server", "batch"


@dataclass(frozen=True)
class FastPathVerdict:
    """Whether a registered version's fast path scores like its pyfunc, per use (server, batch)."""

    model_uri: str
    checks: dict[str, SkewCheck] = field(default_factory=dict)  # use -> comparison (empty if it never loaded)
    precisions: dict[str, str] = field(default_factory=dict)  # use -> the dense layers' precision
    error: str | None = None  # why no comparison could be made (the port does not understand the model)

    @property
    def passed(self) -> bool:
        return self.error is None and bool(self.checks) and all(check.passed for check in self.checks.values())

    @property
    def rows(self) -> int:
        return max((check.rows for check in self.checks.values()), default=0)

    @property
    def worst_ratio(self) -> float:
        return max((check.worst_ratio for check in self.checks.values()), default=float("inf"))

    @property
    def rows_outside(self) -> int:
        return max((check.rows_outside for check in self.checks.values()), default=0)

    def reason(self) -> str:
        """One line: the version, the rule and the numbers of the worst comparison."""
        if self.error is not None:
            return f"{self.model_uri}: no fast path could be derived: {self.error}"
        use, worst = max(self.checks.items(), key=lambda item: item[1].worst_ratio)
        if self.passed:
            uses = ", ".join(f"{name} {precision}" for name, precision in self.precisions.items())
            return (f"{self.model_uri}: the fast path ({uses}) matches the registered model within each row's "
                    f"float32 error bound on all {self.rows:,} probe and test-split rows; closest to its bound: "
                    f"{worst.describe()}")
        return (f"{self.model_uri}: the {use} fast path ({self.precisions[use]}) differs from the registered "
                f"model beyond the float32 error bound: {worst.describe()}")


def verify_registered_version(model_uri: str, test_rows: pd.DataFrame) -> FastPathVerdict:
    """Load ``model_uri`` (``models:/name/N``) as the server does and compare its fast path with the pyfunc.

    Rows: the server's load-time probe rows plus ``test_rows``; uses: the server's precision (the
    loader's default) and :data:`~housing_platform.scoring.batch.BATCH_PRECISION`. A model the port
    cannot read gives a verdict with ``error`` set; any other failure (MLflow unreachable) raises.
    """
    import mlflow

    try:
        scorer = load_fast_scorer(model_uri, verify=False)  # the server's loader; its probe check is redone below
    except ScoringError as error:
        return FastPathVerdict(model_uri, error=f"{type(error).__name__}: {error}")
    python_model = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    test = test_rows[list(FEATURE_COLUMNS)]
    frame = pd.concat([probe_frame(scorer), test.set_axis([f"test row {i}" for i in test.index])])
    expected = np.asarray(python_model.predict(None, frame), dtype=np.float64)
    precisions = {SERVER: scorer.precision, BATCH: BATCH_PRECISION}
    checks = {}
    for use, precision in precisions.items():
        fast = scorer.with_precision(precision)
        checks[use] = check_skew(fast, frame, fast.score(frame), expected)
    return FastPathVerdict(model_uri, checks, precisions)


def fast_path_check_result(verdict: FastPathVerdict, version: str, promoted: bool) -> dg.AssetCheckResult:
    """The blocking check's result: passed or not, why, and the numbers per use."""
    metadata: dict[str, dg.RawMetadataValue] = {
        "model_version": version,
        **numbers_metadata({"rows_compared": (verdict.rows, COUNT), "rows_outside_bound": (verdict.rows_outside, COUNT)}),
        "promoted": promoted,
    }
    if verdict.checks:
        metadata.update(number_metadata("worst_deviation_to_bound", verdict.worst_ratio, SCORE))
    for use, check in verdict.checks.items():
        i = check.worst_row
        metadata[f"{use}_precision"] = verdict.precisions[use]
        metadata.update(numbers_metadata({
            f"{use}_worst_deviation_to_bound": (check.worst_ratio, SCORE),
            f"{use}_worst_deviation_dollars": (float(check.deviations[i]), DOLLARS),
            f"{use}_worst_bound_dollars": (float(check.bounds[i]), DOLLARS),
            f"{use}_rows_outside_bound": (check.rows_outside, COUNT),
        }))
    if verdict.error is not None:
        metadata["error"] = dg.MetadataValue.text(verdict.error)
    outcome = "" if verdict.passed else f" Version {version} refused: `champion` not moved."
    return dg.AssetCheckResult(
        check_name=FAST_PATH_CHECK,
        passed=verdict.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=verdict.reason() + "." + outcome,
        metadata=metadata,
    )


LABEL_SHIFT_CHECK = "label_distribution_matches_champion"


def label_shift_check_description() -> str:
    """The label-shift rule, stated with its defaults (`GateThresholds`, their one home)."""
    limits = GateThresholds()
    return (f"The median price per `ocean_proximity` (categories with ≥ {limits.min_label_shift_rows:,} rows) and "
            f"overall of the data the version learned from is within {limits.max_label_median_shift:.0%} of the "
            "champion's training data. If not, the version is registered but held under the alias "
            "`pending_approval` for `housing-platform approve|reject VERSION` (a warning: nothing is blocked), and "
            "this check names the moves beside both yardsticks: test split and pinned golden holdout RMSE.")


def label_shift_check_result(report: dict, version: str, held: bool) -> dg.AssetCheckResult:
    """Passed unless the version was held for approval; the description names the numbers either way."""
    shift = report.get("label_shift") or {}
    champion = report.get("champion")
    golden = report.get("golden_holdout") or {}
    yardsticks = f"Test split RMSE ${report['metrics']['rmse']:,.0f}"
    if champion:
        yardsticks += f" vs champion v{champion['version']} ${champion['metrics']['rmse']:,.0f}"
    metadata: dict[str, dg.RawMetadataValue] = {
        "model_version": version, "pending_approval": held, **number_metadata("test_rmse", report["metrics"]["rmse"], DOLLARS),
    }
    if golden:
        yardsticks += f"; golden holdout RMSE ${golden['metrics']['rmse']:,.0f}"
        metadata.update(number_metadata("golden_rmse", golden["metrics"]["rmse"], DOLLARS))
        if golden.get("champion_metrics"):
            yardsticks += f" vs champion ${golden['champion_metrics']['rmse']:,.0f}"
            metadata.update(number_metadata("champion_golden_rmse", golden["champion_metrics"]["rmse"], DOLLARS))
        yardsticks += f" on {golden['rows']:,} pinned rows"
    for move in shift.get("moves", []):
        if move["compared"]:
            metadata.update(number_metadata(f"median_change_{move['category']}", move["change"], CHANGE))
    reason = shift.get("reason", "label shift not assessed (no label_shift in the evaluation report)")
    outcome = (f"Version {version} waits in `pending_approval`: `housing-platform approve {version}` or "
               f"`housing-platform reject {version}`. " if held else "")
    return dg.AssetCheckResult(
        check_name=LABEL_SHIFT_CHECK,
        passed=not held,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{outcome}{reason[0].upper()}{reason[1:]}. {yardsticks}.",
        metadata=metadata,
    )


label_shift_check_spec = dg.AssetCheckSpec(
    LABEL_SHIFT_CHECK, asset="registered_model_version", blocking=False, description=label_shift_check_description()
)

fast_path_check_spec = dg.AssetCheckSpec(
    FAST_PATH_CHECK, asset="registered_model_version", blocking=True, description=FAST_PATH_DESCRIPTION
)
