"""The rollout decision as an asset check of `challenger_comparison`: promote / wait / reject, with the numbers."""

from __future__ import annotations

import dagster as dg

from housing_platform.core.rollout import REJECT, WAIT, Decision, RolloutConfig
from housing_platform.defs.metadata import CHANGE, COUNT, DOLLARS, SCORE, number_metadata, numbers_metadata

DECISION_CHECK = "challenger_not_worse_than_champion"


def decision_check_description() -> str:
    limits = RolloutConfig()
    return (f"The `challenger` against the champion on live traffic with trusted labels: promote when the "
            f"{limits.confidence:.0%} bootstrap interval of the relative RMSE difference lies below "
            f"+{limits.non_inferiority_margin:.0%} and no slice (ocean_proximity, income quintile; ≥ "
            f"{limits.min_slice_rows} rows) is worse by more than {limits.max_slice_regression:.0%}; reject when the "
            f"interval lies above it, a slice regresses, p99 latency exceeds {limits.max_p99_latency_ratio:g}× the "
            f"champion's, or it is still undecided after {limits.max_wait_days:g} days; otherwise wait (at least "
            f"{limits.min_labelled_rows} labelled rows per model; the metadata says how many more). Fails on reject.")


decision_check_spec = dg.AssetCheckSpec(DECISION_CHECK, asset="challenger_comparison", blocking=False,
                                        description=decision_check_description())


def decision_check_result(decision: Decision, champion: str, challenger: str, mode: str,
                          moved: bool) -> dg.AssetCheckResult:
    metadata: dict[str, dg.RawMetadataValue] = {
        "outcome": decision.outcome, "champion": champion, "challenger": challenger, "rollout": mode,
        "aliases_moved": moved,
    }
    c = decision.comparison
    if c is not None:
        metadata.update(numbers_metadata({
            "labelled_rows_champion": (c.rows_champion, COUNT),
            "labelled_rows_challenger": (c.rows_challenger, COUNT),
            "rmse_champion": (c.rmse_champion, DOLLARS),
            "rmse_challenger": (c.rmse_challenger, DOLLARS),
            "rmse_difference": (c.difference, CHANGE),  # relative: challenger / champion - 1
            "ci_lower": (c.lower, CHANGE),
            "ci_upper": (c.upper, CHANGE),
            "prediction_divergence_dollars": (c.divergence_dollars, DOLLARS),  # shadow only: n/a in canary
            **{f"slice_{s.slice_by}_{s.value}_rmse_ratio": (s.ratio if s.rmse_champion > 0 else 0.0, SCORE)
               for s in c.slices},
        }))
    if decision.outcome == WAIT:
        metadata.update(number_metadata("more_labelled_rows_needed", decision.more_rows_needed, COUNT))
    return dg.AssetCheckResult(
        check_name=DECISION_CHECK,
        passed=decision.outcome != REJECT,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{decision.outcome}: {decision.reason}",
        metadata=metadata,
    )


def no_challenger_check_result() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(check_name=DECISION_CHECK, passed=True, severity=dg.AssetCheckSeverity.WARN,
                               description="no challenger: nothing to compare", metadata={"outcome": "no challenger"})
