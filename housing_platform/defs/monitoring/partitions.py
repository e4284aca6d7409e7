"""The monitoring assets' daily partitions: one UTC day of live traffic each."""

from datetime import datetime, timedelta, timezone

import dagster as dg

from housing_platform.config.settings import HousingSettings

# Partitions start on a configurable day (HOUSING_MONITORING_START_DATE); end_offset=1 includes today,
# which the hourly schedule refreshes.
MONITORING_START_DATE = HousingSettings.from_env().monitoring_start_date
daily_partitions = dg.DailyPartitionsDefinition(start_date=MONITORING_START_DATE, end_offset=1, timezone="UTC")


def today_partition_key(now: datetime | None = None) -> str:
    """The partition of ``now`` (default: the current time), a UTC date."""
    return (now or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime("%Y-%m-%d")


def day_window(partition_key: str) -> tuple[datetime, datetime]:
    """``[start, end)`` of a partition's UTC day."""
    start = datetime.strptime(partition_key, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    return start, start + timedelta(days=1)
