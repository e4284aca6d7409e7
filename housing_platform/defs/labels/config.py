"""Run config of `labelled_traffic`: the label gate's thresholds and the key labels are grouped by.

Defaults come from `core.label_consistency.LabelGateLimits` (consistency and volume) and
`core.validation.DataGateLimits` (the share of rows that may break the schema, as for the raw data).
"""

import dagster as dg
from pydantic import Field

from housing_platform.core.label_consistency import LabelGateLimits
from housing_platform.core.validation import DataGateLimits
from housing_platform.defs.config_fields import field_from

# The column the auth layer records the feedback token in; absent, every label counts as one source.
TOKEN_COLUMN = "feedback_token"


class LabelGateConfig(dg.Config):
    """When labelled captures are held for a person instead of trained on."""

    source_column: str = Field(
        TOKEN_COLUMN,
        description="Capture-store column naming who sent a label (per-source volume and consistency). When the "
        "store has no such column, all labels are one source, 'unattributed'.",
    )
    significance: float = field_from(LabelGateLimits, "significance")
    max_median_ratio_shift: float = field_from(LabelGateLimits, "max_median_ratio_shift")
    max_label_shift: float = field_from(LabelGateLimits, "max_label_shift")
    min_group_rows: int = field_from(LabelGateLimits, "min_group_rows")
    max_labels_per_source_per_day: int = field_from(LabelGateLimits, "max_labels_per_source_per_day")
    max_schema_failure_share: float = field_from(
        DataGateLimits, "max_quarantine_share",
        "Largest share of new labelled rows that may break the schema (they are held either way).",
    )

    def to_limits(self) -> LabelGateLimits:
        return LabelGateLimits(**self.model_dump(include=set(LabelGateLimits.model_fields)))
