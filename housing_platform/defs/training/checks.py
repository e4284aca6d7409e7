"""The promotion gate: five blocking checks on `evaluation_report`.

Each check re-reads the rule's verdict from the report with `core.model_gate.evaluate_model_gate`, using
the thresholds recorded in the report (the run config of that evaluation). They are blocking, so when one
fails `registered_model_version` does not run and the `champion` alias stays where it is. Descriptions
are formatted from `GateThresholds`' defaults, the one home of the gate's limits.
"""

import dagster as dg

from housing_platform.core.model_gate import (
    BASELINE_CHECK,
    BASELINE_LABELS,
    CHAMPION_CHECK,
    GATE_CHECKS,
    GOLDEN_CHECK,
    RMSE_CHECK,
    SLICE_CHECK,
    GateThresholds,
    evaluate_model_gate,
)
from housing_platform.defs.metadata import COUNT, DOLLARS, number_metadata
from housing_platform.defs.training.assets import evaluation_report

__all__ = ["BASELINE_CHECK", "CHAMPION_CHECK", "GATE_CHECKS", "GOLDEN_CHECK", "RMSE_CHECK", "SLICE_CHECK",
           "gate_checks"]


def gate_check_descriptions(thresholds: GateThresholds | None = None) -> dict[str, str]:
    """What each rule checks, stated with ``thresholds`` (default: the configured defaults)."""
    limits = thresholds or GateThresholds()
    return {
        RMSE_CHECK: f"Test RMSE is at most `max_rmse_dollars` (default ${limits.max_rmse_dollars:,.0f}).",
        BASELINE_CHECK: f"Test RMSE is at least {limits.min_improvement_over_baseline:.0%} below the baseline "
        f"`baseline_to_beat`'s on the same rows (default: {BASELINE_LABELS[limits.baseline_to_beat]}).",
        CHAMPION_CHECK: f"Test RMSE is no more than {limits.max_regression_vs_champion:.0%} above the current "
        "champion's on the same test rows (skipped, with the reason recorded, when there is no champion yet).",
        SLICE_CHECK: f"No slice with ≥ {limits.min_slice_rows:,} test rows has an RMSE above "
        f"{limits.max_slice_rmse_ratio:g}× the overall RMSE.",
        GOLDEN_CHECK: f"RMSE on the pinned golden holdout (base rows chosen once, never fed by traffic) is no more "
        f"than {limits.max_golden_regression_vs_champion:.0%} above the champion's there (skipped when there is no "
        "champion). When the training labels shifted it warns instead of blocking: the version waits in "
        "`pending_approval` for a person.",
    }


def detail_metadata(key: str, value) -> dict:
    """One entry of a gate verdict's details as metadata: numbers for people beside their raw value.

    The gate's numbers are counts (``*_rows``) or dollars (the RMSEs and the limit they are held to).
    """
    if isinstance(value, bool):
        return {key: value}
    if isinstance(value, (int, float)):
        return number_metadata(key, value, COUNT if key.endswith("_rows") else DOLLARS)
    return {key: dg.MetadataValue.text(str(value))}


def _gate_check(check_name: str, description: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=evaluation_report, name=check_name, blocking=True, description=description)
    def _check(evaluation_report: dict) -> dg.AssetCheckResult:
        verdict = evaluate_model_gate(evaluation_report)[check_name]
        return dg.AssetCheckResult(
            passed=verdict.passed,
            # A verdict a person must judge warns: only an ERROR failure of a blocking check blocks the registry.
            severity=dg.AssetCheckSeverity.WARN if verdict.needs_review else dg.AssetCheckSeverity.ERROR,
            description=verdict.description,
            metadata={"skipped": verdict.skipped, "needs_review": verdict.needs_review,
                      **{k: v for key, value in verdict.details.items() for k, v in detail_metadata(key, value).items()}},
        )

    return _check


gate_checks = [_gate_check(name, description) for name, description in gate_check_descriptions().items()]
