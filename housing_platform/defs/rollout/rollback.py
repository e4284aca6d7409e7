"""The baking window: after any promotion, roll `champion` back to `previous` when live quality says so.

Plain Python over the registry and the capture store (the sensor in `sensors.py` is its Dagster shell).
The new champion's trusted-labelled rows since it was promoted (`promoted_at`) are compared with the rows
`previous` answered before (re-weighted to the same `ocean_proximity` mix, `core/rollout.py`); p99 latency
of each from the captures, error rate from the rows each failed to answer (`scoring_failures`). On a
rollback the version rolled back to also becomes the server's fallback baseline again (as `approve` and the
gate do on a promotion).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from housing_platform.adapters.alias_moves import AliasEvent, roll_back
from housing_platform.adapters.mlflow_registry import PREVIOUS_ALIAS
from housing_platform.core.rollout import ROLLBACK, Decision, RolloutConfig, rollback_decision
from housing_platform.defs.rollout import evidence

LOOKBACK_DAYS = 7  # how far before the promotion previous's rows are read


@dataclass(frozen=True)
class RollbackVerdict:
    skipped: str | None  # why nothing was judged (no previous, outside the baking window)
    decision: Decision | None = None
    event: AliasEvent | None = None


def watch_champion(registry, store, by: str, limits: RolloutConfig | None = None, trusted_only: bool = True,
                   fallback_files=None, now: datetime | None = None) -> RollbackVerdict:
    """Judge the champion inside its baking window; roll back (recording ``by``) when the decision says so."""
    limits = limits or RolloutConfig()
    now = now or datetime.now(UTC)
    champion, previous = registry.champion(), registry.version_by_alias(PREVIOUS_ALIAS)
    if champion is None or previous is None:
        return RollbackVerdict("no champion and previous pair: nothing to roll back to")
    promoted_at = registry.promoted_at(champion)
    if promoted_at is None:
        return RollbackVerdict(f"champion {champion.version} has no promoted_at: its baking window is unknown")
    if now - promoted_at > timedelta(hours=limits.baking_hours):
        return RollbackVerdict(f"champion {champion.version} baked: promoted {promoted_at.isoformat(timespec='seconds')}, "
                               f"window {limits.baking_hours:g} h")
    traffic = evidence.read_traffic(store, promoted_at - timedelta(days=LOOKBACK_DAYS), now, trusted_only)
    frame = traffic.frame
    after = frame[frame["captured_at"] >= promoted_at]
    before = frame[frame["captured_at"] < promoted_at]
    failures = traffic.failures
    failed_after = failures[failures["recorded_at"] >= promoted_at]
    failed_before = failures[failures["recorded_at"] < promoted_at]
    decision = rollback_decision(evidence.model_rows(after, champion.version),
                                 evidence.model_rows(before, previous.version),
                                 evidence.operations(after, champion.version, failed_after),
                                 evidence.operations(before, previous.version, failed_before), limits)
    if decision.outcome != ROLLBACK:
        return RollbackVerdict(None, decision)
    event = roll_back(registry, by, decision.reason, decision.evidence())
    if fallback_files is not None:  # the file store (adapters/file_store.py)
        from housing_platform.adapters.fallback_store import store_fallback_baseline

        baseline = registry.fallback_baseline(event.version)
        if baseline is not None:
            store_fallback_baseline(fallback_files, {**baseline, "model_version": event.version})
    return RollbackVerdict(None, decision, event)
