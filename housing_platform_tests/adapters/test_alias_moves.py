"""Alias moves of the safe rollout on a real MLflow registry: each move lands where it should and is recorded."""

from __future__ import annotations

import json

import pytest

from housing_platform.adapters.alias_moves import (
    CHALLENGE,
    CHALLENGER_ALIAS,
    PROMOTE,
    REJECT,
    REJECTED_REASON_TAG,
    ROLLBACK,
    ROLLED_BACK_REASON_TAG,
    ROLLOUT_SHARE_TAG,
    ROLLOUT_TAG,
    SET_ROLLOUT,
    alias_history,
    promote_challenger,
    reject_challenger,
    roll_back,
    rollout_of,
    set_rollout,
    start_rollout,
)
from housing_platform.adapters.mlflow_registry import PREVIOUS_ALIAS, PROMOTED_AT_TAG, ModelRegistry


@pytest.fixture
def registry(models, tmp_path) -> ModelRegistry:
    """A private copy of the shared tiny registry (v1 champion, v2 registered): moves here touch no other test."""
    return models.private_copy(tmp_path).registry()


def test_challenger_carries_its_rollout_and_set_rollout_changes_it(registry):
    v1, v2 = "1", "2"
    start_rollout(registry, v2, "canary", 0.1, "dagster run abc", "passed the gate", {"test_rmse": 50_000.0})
    challenger = registry.version_by_alias(CHALLENGER_ALIAS)
    assert challenger.version == v2 and registry.champion().version == v1
    assert (challenger.tags[ROLLOUT_TAG], challenger.tags[ROLLOUT_SHARE_TAG]) == ("canary", "0.1")
    set_rollout(registry, "cli alice", share=0.25, mode="shadow")
    assert rollout_of(registry.version_by_alias(CHALLENGER_ALIAS)) == ("shadow", 0.25)
    with pytest.raises(ValueError, match="rollout_share must be between 0 and 1"):
        set_rollout(registry, "cli alice", share=1.5)
    with pytest.raises(ValueError, match="rollout must be one of"):
        start_rollout(registry, v2, "blue-green", 0.1, "x", "y")


def test_promote_then_roll_back_moves_champion_and_previous_and_records_every_move(registry):
    start_rollout(registry, "2", "shadow", 0.5, "dagster run abc", "passed the gate")
    promote_challenger(registry, "sensor challenger_comparison", "not worse", {"ci_upper": -0.03})
    assert registry.champion().version == "2"
    assert registry.version_by_alias(PREVIOUS_ALIAS).version == "1"
    assert registry.version_by_alias(CHALLENGER_ALIAS) is None
    roll_back(registry, "sensor rollback", "worse than previous by +12%", {"ci_lower": 0.08})
    assert registry.champion().version == "1"
    assert registry.version_by_alias(PREVIOUS_ALIAS) is None  # the rolled-back version is nobody's fallback
    assert registry.get_version("2").tags[ROLLED_BACK_REASON_TAG] == "worse than previous by +12%"
    assert PROMOTED_AT_TAG in registry.get_version("1").tags  # the server check times the swap back from it

    history = alias_history(registry)
    assert [event.action for event in history] == [CHALLENGE, PROMOTE, ROLLBACK]
    assert [(event.version, event.replaced) for event in history] == [("2", None), ("2", "1"), ("1", "2")]
    assert history[2].by == "sensor rollback" and history[2].evidence == {"ci_lower": 0.08}
    event_tags = [k for k in registry.get_version("2").tags if k.startswith("alias_event_")]
    assert len(event_tags) == 3 and json.loads(registry.get_version("2").tags[event_tags[0]])["action"]


def test_reject_removes_the_challenger_and_tags_why(registry):
    start_rollout(registry, "2", "canary", 0.1, "dagster run abc", "passed the gate")
    set_rollout(registry, "cli bob", share=0.2)
    reject_challenger(registry, "sensor challenger_comparison", "worse beyond the 2% margin")
    assert registry.version_by_alias(CHALLENGER_ALIAS) is None and registry.champion().version == "1"
    assert registry.get_version("2").tags[REJECTED_REASON_TAG] == "worse beyond the 2% margin"
    assert [e.action for e in alias_history(registry)] == [CHALLENGE, SET_ROLLOUT, REJECT]
    with pytest.raises(LookupError, match="no 'challenger'"):
        promote_challenger(registry, "x", "y")
    with pytest.raises(LookupError, match="no 'previous'"):
        roll_back(registry, "x", "y")
