"""`housing-platform rollout set|show` and `rollback` on a real (copied) registry: moves land and are recorded."""

from __future__ import annotations

import shutil

import pytest

from housing_platform.adapters.alias_moves import (
    CHALLENGER_ALIAS,
    ROLLBACK,
    SET_ROLLOUT,
    alias_history,
    rollout_of,
    start_rollout,
)
from housing_platform.adapters.mlflow_registry import ModelRegistry
from housing_platform.cli.main import main
from housing_platform.cli.rollout import EXIT_DONE, EXIT_NOT_FOUND, EXIT_REFUSED


@pytest.fixture
def registry(models, tmp_path, monkeypatch) -> ModelRegistry:
    shutil.copytree(models.root / "mlflow", tmp_path / "mlflow")
    tracking, artifacts = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}", (tmp_path / "mlflow" / "artifacts").as_uri()
    monkeypatch.setenv("HOUSING_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)
    monkeypatch.setenv("HOUSING_MLFLOW_ARTIFACT_ROOT", artifacts)
    return ModelRegistry(tracking, artifacts)


def test_rollout_set_changes_the_challengers_tags_and_names_the_person(registry, capsys):
    assert main(["rollout", "set", "--share", "0.25", "--by", "alice"]) == EXIT_REFUSED  # no challenger yet
    assert "no 'challenger'" in capsys.readouterr().err
    start_rollout(registry, "2", "canary", 0.1, "test", "passed the gate")
    assert main(["rollout", "set", "--share", "0.25", "--by", "alice"]) == EXIT_DONE
    assert rollout_of(registry.version_by_alias(CHALLENGER_ALIAS)) == ("canary", 0.25)
    assert main(["rollout", "set", "--share", "1.5", "--by", "alice"]) == EXIT_REFUSED
    assert "rollout_share must be between 0 and 1" in capsys.readouterr().err
    event = alias_history(registry)[-1]
    assert (event.action, event.by) == (SET_ROLLOUT, "cli alice")
    assert main(["rollout", "show"]) == EXIT_DONE
    assert "challenger: 2 (canary, share 0.25)" in capsys.readouterr().out


def test_rollback_moves_champion_to_previous_or_the_named_version(registry, capsys):
    assert main(["rollback", "--by", "bob"]) == EXIT_REFUSED  # v1 is champion, nothing is previous
    assert main(["rollback", "--to", "99", "--by", "bob"]) == EXIT_NOT_FOUND
    registry.promote("2")
    assert main(["rollback", "--reason", "complaints from the field", "--by", "bob"]) == EXIT_DONE
    assert registry.champion().version == "1"
    event = alias_history(registry)[-1]
    assert (event.action, event.by, event.reason, event.replaced) == (ROLLBACK, "cli bob", "complaints from the field", "2")
    assert main(["rollback", "--to", "2", "--by", "bob"]) == EXIT_DONE and registry.champion().version == "2"
