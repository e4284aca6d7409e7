"""Run config of the serving checks: what counts as *recent* live traffic. The defaults live here only."""

import dagster as dg
from pydantic import Field


class EndpointCheckConfig(dg.Config):
    """Which captures show the version the live endpoint serves now."""

    recent_minutes: float = Field(
        60.0,
        gt=0,
        description="Captures of the last this-many minutes are evidence of what the endpoint serves now (one hour: "
        "the period of the hourly monitoring schedule); older ones say nothing about the present.",
    )
    settle_seconds: float = Field(
        120.0,
        ge=0,
        description="Captures made within this long after `champion` moved are not held against the endpoint: the "
        "server sees the move at its next alias poll (`poll_interval_seconds`) and then loads and verifies it.",
    )
