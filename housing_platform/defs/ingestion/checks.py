"""The data gate as four blocking checks on `validated_housing_data`.

The asset evaluates them itself (its check specs), in the same step that validates the rows, so a
failing rule stops everything downstream in the run. The rules and their limits live in
`core.validation` (`evaluate_data_gate`, `DataGateLimits`); the descriptions below are formatted from
those defaults, so the UI never states a limit the code does not apply.
"""

import dagster as dg

from housing_platform.core.schema import NULL_ALLOWANCE
from housing_platform.core.validation import (
    DATA_GATE_CHECKS,
    DUPLICATE_SHARE_CHECK,
    ENOUGH_ROWS_CHECK,
    NULL_SHARE_CHECK,
    QUARANTINE_SHARE_CHECK,
    DataGateLimits,
)
from housing_platform.defs.metadata import COUNT, SHARE

VALIDATED_ASSET = "validated_housing_data"
VALIDATION_CHECKS = DATA_GATE_CHECKS
# What each rule's `value` and `limit` are, so people read them as such: shares, except the row count.
VALUE_KINDS = {name: COUNT if name == ENOUGH_ROWS_CHECK else SHARE for name in VALIDATION_CHECKS}

__all__ = [
    "DUPLICATE_SHARE_CHECK",
    "ENOUGH_ROWS_CHECK",
    "NULL_SHARE_CHECK",
    "QUARANTINE_SHARE_CHECK",
    "VALIDATION_CHECKS",
    "VALUE_KINDS",
    "data_gate_descriptions",
    "validation_check_specs",
]


def _null_allowances() -> str:
    allowed = [f"{share:.0%} for {column}" for column, share in NULL_ALLOWANCE.items() if share > 0]
    return ", ".join(allowed) + ", none elsewhere" if allowed else "none in any column"


def data_gate_descriptions(limits: DataGateLimits | None = None) -> dict[str, str]:
    """What each rule checks, stated with ``limits`` (default: the configured defaults)."""
    limits = limits or DataGateLimits()
    return {
        QUARANTINE_SHARE_CHECK: f"At most {limits.max_quarantine_share:.0%} (configurable) of input rows break a "
        "row-level schema rule.",
        DUPLICATE_SHARE_CHECK: f"At most {limits.max_duplicate_share:.0%} (configurable) of valid rows are exact "
        "duplicates of another row.",
        NULL_SHARE_CHECK: f"Each column's share of nulls in the input is within its allowance ({_null_allowances()}).",
        ENOUGH_ROWS_CHECK: f"At least {limits.min_rows:,} (configurable) valid rows remain to train on.",
    }


def validation_check_specs() -> list[dg.AssetCheckSpec]:
    descriptions = data_gate_descriptions()
    return [
        dg.AssetCheckSpec(name, asset=VALIDATED_ASSET, blocking=True, description=descriptions[name])
        for name in VALIDATION_CHECKS
    ]
