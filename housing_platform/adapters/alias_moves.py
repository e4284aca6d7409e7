"""Alias moves of the safe rollout, each one recorded as an event on the versions it touches.

Plain Python over :class:`~housing_platform.adapters.mlflow_registry.ModelRegistry` (no Dagster): the
registry asset, the `challenger_comparison` checks, the rollback sensor and the CLI all move aliases
through these functions, so every move says the same things about itself.

* ``challenger``: a version that passed the gate under ``rollout = shadow | canary`` waits here; its
  tags :data:`ROLLOUT_TAG` (mode) and :data:`ROLLOUT_SHARE_TAG` are what every server replica follows.
* :func:`promote_challenger`: challenger → ``champion`` (the old champion → ``previous``).
* :func:`reject_challenger`: the ``challenger`` alias is removed, the reason tagged.
* :func:`roll_back`: ``champion`` → ``previous`` (or a named version), the reason tagged on the
  version that was rolled back.

Every move writes a tag ``alias_event_<UTC timestamp>`` (JSON: action, alias, version, replaced
version, who — a Dagster run id, a sensor, a CLI user —, why and the evidence) on the version it
moved the alias to or from; :func:`alias_history` reads them back in time order.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from housing_platform.adapters.mlflow_registry import (
    CHAMPION_ALIAS,
    MAX_TAG_VALUE_CHARS,
    PREVIOUS_ALIAS,
    PROMOTED_AT_TAG,
    ModelRegistry,
    RegisteredVersion,
)
from housing_platform.core.rollout import DIRECT, validate_mode, validate_share

CHALLENGER_ALIAS = "challenger"
ROLLOUT_TAG = "rollout"  # direct | shadow | canary: how the challenger is served
ROLLOUT_SHARE_TAG = "rollout_share"  # canary: the fraction of rows the challenger answers
CHALLENGER_SINCE_TAG = "challenger_since"  # ISO-8601 UTC: when the version became challenger (the wait cap)
ROLLOUT_STATUS_TAG = "rollout_status"  # challenger | promoted | rejected | superseded | rolled_back
REJECTED_REASON_TAG = "rejected_reason"
ROLLED_BACK_REASON_TAG = "rolled_back_reason"
EVENT_TAG_PREFIX = "alias_event_"
CHALLENGE, SET_ROLLOUT, PROMOTE, REJECT, ROLLBACK = "challenge", "set_rollout", "promote", "reject", "rollback"
HOLD = "hold"  # a version that passed the gate on shifted labels waits under pending_approval


@dataclass(frozen=True)
class AliasEvent:
    """One alias move: what moved where, who moved it, why, and the numbers it rested on."""

    action: str  # CHALLENGE | SET_ROLLOUT | PROMOTE | REJECT | ROLLBACK | HOLD
    alias: str
    version: str  # the version the alias now names (for REJECT: the version it was removed from)
    replaced: str | None  # the version the alias named before (None if none)
    by: str  # "dagster run <id>", "sensor <name>", "cli <user>"
    reason: str
    evidence: dict = field(default_factory=dict)
    at: str = ""  # ISO-8601 UTC

    def describe(self) -> str:
        moved = f"{self.alias} {self.replaced or 'none'} -> {self.version}" if self.action != REJECT else (
            f"{self.alias} removed from {self.version}")
        return f"{self.at} {self.action}: {moved} by {self.by}: {self.reason}"


def _record(registry: ModelRegistry, event: AliasEvent, *versions: str | None) -> AliasEvent:
    stamped = AliasEvent(**{**asdict(event), "at": datetime.now(UTC).isoformat(timespec="microseconds")})
    key = EVENT_TAG_PREFIX + stamped.at.replace(":", "").replace("-", "").replace("+0000", "Z").replace(".", "_")
    text = json.dumps(asdict(stamped), sort_keys=True, default=str)
    if len(text) > MAX_TAG_VALUE_CHARS:  # keep the event whole: drop evidence rather than cut the JSON
        text = json.dumps({**asdict(stamped), "evidence": {"truncated": True}}, sort_keys=True, default=str)
    for version in dict.fromkeys(v for v in versions if v):
        registry.set_tags(version, {key: text})
    return stamped


def record_move(registry: ModelRegistry, action: str, alias: str, version: str, replaced: str | None, by: str,
                reason: str, evidence: dict | None = None) -> AliasEvent:
    """Record a move made elsewhere (``hold_for_approval``, a rejected pending version) as an alias event."""
    return _record(registry, AliasEvent(action, alias, str(version), replaced, by, reason, evidence or {}),
                   version, replaced)


def rollout_of(version: RegisteredVersion) -> tuple[str, float | None]:
    """(mode, share) a challenger carries; a version without valid tags (or tagged direct, which a challenger
    cannot be) is served as a shadow: it answers nobody until a person or the comparison says so."""
    try:
        mode = validate_mode(version.tags.get(ROLLOUT_TAG, ""))
    except ValueError:
        return "shadow", None
    if mode == DIRECT:
        return "shadow", None
    try:
        share = validate_share(version.tags[ROLLOUT_SHARE_TAG]) if ROLLOUT_SHARE_TAG in version.tags else None
    except ValueError:
        share = None
    return mode, share


def start_rollout(registry: ModelRegistry, version: str, mode: str, share: float, by: str, reason: str,
                  evidence: dict | None = None) -> AliasEvent:
    """Make ``version`` the challenger, served as ``mode`` with ``share``; a challenger it replaces is superseded."""
    validate_mode(mode)
    if mode == DIRECT:
        raise ValueError("rollout=direct promotes at once: use ModelRegistry.promote, not a challenger")
    validate_share(share)
    old = registry.version_by_alias(CHALLENGER_ALIAS)
    replaced = old.version if old is not None and old.version != str(version) else None
    if replaced:
        registry.set_tags(replaced, {ROLLOUT_STATUS_TAG: "superseded", "superseded_by": str(version)})
    registry.set_tags(version, {ROLLOUT_TAG: mode, ROLLOUT_SHARE_TAG: f"{share:g}", ROLLOUT_STATUS_TAG: "challenger",
                                CHALLENGER_SINCE_TAG: datetime.now(UTC).isoformat()})
    registry.client.set_registered_model_alias(registry.model_name, CHALLENGER_ALIAS, str(version))
    return _record(registry, AliasEvent(CHALLENGE, CHALLENGER_ALIAS, str(version), replaced, by, reason,
                                        {"rollout": mode, "rollout_share": share, **(evidence or {})}), version, replaced)


def set_rollout(registry: ModelRegistry, by: str, share: float | None = None, mode: str | None = None) -> AliasEvent:
    """Change the current challenger's share and/or mode (every replica follows at its next poll)."""
    challenger = registry.version_by_alias(CHALLENGER_ALIAS)
    if challenger is None:
        raise LookupError(f"{registry.model_name} has no '{CHALLENGER_ALIAS}': nothing is being rolled out")
    old_mode, old_share = rollout_of(challenger)
    tags = {}
    if mode is not None:
        validate_mode(mode)
        if mode == DIRECT:
            raise ValueError("rollout mode of a challenger is shadow or canary; promote it to go direct")
        tags[ROLLOUT_TAG] = mode
    if share is not None:
        tags[ROLLOUT_SHARE_TAG] = f"{validate_share(share):g}"
    registry.set_tags(challenger.version, tags)
    reason = f"rollout {old_mode} {old_share} -> {mode or old_mode} {share if share is not None else old_share}"
    return _record(registry, AliasEvent(SET_ROLLOUT, CHALLENGER_ALIAS, challenger.version, challenger.version, by,
                                        reason, {"rollout": mode or old_mode, "rollout_share": share or old_share}),
                   challenger.version)


def record_direct_promotion(registry: ModelRegistry, version: str, replaced: str | None, by: str,
                            reason: str, evidence: dict | None = None) -> AliasEvent:
    """The event of a promotion the gate made at once (``rollout = direct``) or a person approved."""
    registry.set_tags(version, {ROLLOUT_STATUS_TAG: "promoted"})
    return _record(registry, AliasEvent(PROMOTE, CHAMPION_ALIAS, str(version), replaced, by, reason, evidence or {}),
                   version, replaced)


def promote_challenger(registry: ModelRegistry, by: str, reason: str, evidence: dict | None = None) -> AliasEvent:
    """challenger → champion; the replaced champion → previous; the challenger alias is removed."""
    challenger = registry.version_by_alias(CHALLENGER_ALIAS)
    if challenger is None:
        raise LookupError(f"{registry.model_name} has no '{CHALLENGER_ALIAS}' to promote")
    old = registry.promote(challenger.version)
    registry.remove_alias(CHALLENGER_ALIAS)
    replaced = old.version if old is not None and old.version != challenger.version else None
    return record_direct_promotion(registry, challenger.version, replaced, by, reason, evidence)


def reject_challenger(registry: ModelRegistry, by: str, reason: str, evidence: dict | None = None) -> AliasEvent:
    """The challenger alias is removed; ``champion`` does not move."""
    challenger = registry.version_by_alias(CHALLENGER_ALIAS)
    if challenger is None:
        raise LookupError(f"{registry.model_name} has no '{CHALLENGER_ALIAS}' to reject")
    registry.remove_alias(CHALLENGER_ALIAS)
    registry.set_tags(challenger.version, {ROLLOUT_STATUS_TAG: "rejected", REJECTED_REASON_TAG: reason})
    return _record(registry, AliasEvent(REJECT, CHALLENGER_ALIAS, challenger.version, challenger.version, by,
                                        reason, evidence or {}), challenger.version)


def roll_back(registry: ModelRegistry, by: str, reason: str, evidence: dict | None = None,
              to: str | None = None) -> AliasEvent:
    """``champion`` → ``previous`` (or ``to``). The rolled-back version is tagged with the reason and is no
    longer anyone's ``previous``; the version rolled back to is stamped ``promoted_at`` (the server check
    times its swap from it)."""
    champion = registry.champion()
    target = registry.get_version(to) if to is not None else registry.version_by_alias(PREVIOUS_ALIAS)
    if target is None:
        raise LookupError(f"{registry.model_name} has no '{PREVIOUS_ALIAS}' to roll back to; name one with --to")
    if champion is not None and champion.version == target.version:
        raise ValueError(f"version {target.version} already is the champion")
    registry.client.set_registered_model_alias(registry.model_name, CHAMPION_ALIAS, target.version)
    registry.set_tags(target.version, {PROMOTED_AT_TAG: datetime.now(UTC).isoformat()})
    previous = registry.version_by_alias(PREVIOUS_ALIAS)
    if previous is not None and previous.version == target.version:
        registry.remove_alias(PREVIOUS_ALIAS)
    replaced = champion.version if champion is not None else None
    if replaced:
        registry.set_tags(replaced, {ROLLOUT_STATUS_TAG: "rolled_back", ROLLED_BACK_REASON_TAG: reason})
    return _record(registry, AliasEvent(ROLLBACK, CHAMPION_ALIAS, target.version, replaced, by, reason,
                                        evidence or {}), target.version, replaced)


def alias_history(registry: ModelRegistry) -> list[AliasEvent]:
    """Every recorded alias move of the model, oldest first (an event on two versions is read once)."""
    events: dict[str, AliasEvent] = {}
    for version in registry.client.search_model_versions(f"name='{registry.model_name}'"):
        for key, value in (version.tags or {}).items():
            if key.startswith(EVENT_TAG_PREFIX) and key not in events:
                try:
                    events[key] = AliasEvent(**json.loads(value))
                except (ValueError, TypeError):
                    continue  # a hand-edited tag is not an event
    return [events[key] for key in sorted(events, key=lambda k: events[k].at)]
