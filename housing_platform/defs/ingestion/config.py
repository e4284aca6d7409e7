"""Run config of the ingestion assets: the data gate's limits, shown in the launchpad."""

import dagster as dg

from housing_platform.core.validation import DataGateLimits
from housing_platform.defs.config_fields import field_from


class ValidationGateConfig(dg.Config):
    """Limits of the data gate; defaults and descriptions come from `core.validation.DataGateLimits`."""

    max_quarantine_share: float = field_from(DataGateLimits, "max_quarantine_share")
    max_duplicate_share: float = field_from(DataGateLimits, "max_duplicate_share")
    min_rows: int = field_from(DataGateLimits, "min_rows")

    def to_limits(self) -> DataGateLimits:
        return DataGateLimits(**self.model_dump())
