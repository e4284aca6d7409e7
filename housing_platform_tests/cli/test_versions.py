"""`housing-platform approve|reject`: what they refuse, on a real registry holding the tiny model's files.

The happy paths (a version held after a label shift, approved or rejected) run on the real graph in
`defs/test_pending_approval.py`; here: unknown versions and registries, versions that are not
pending, a newer hold superseding an older one, and approval going through the same verification as
an automatic promotion (the pipeline's fast-path verdict, then the model files' recorded hashes).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from housing_platform.adapters.mlflow_registry import (
    APPROVAL_STATUS_TAG,
    FAST_PATH_VERIFIED_TAG,
    PENDING_APPROVAL_ALIAS,
    ModelRegistry,
    model_artifacts,
)
from housing_platform.cli.main import main
from housing_platform.cli.versions import EXIT_NOT_FOUND, EXIT_REFUSED
from housing_platform.config.settings import HousingSettings
from housing_platform.core.schema import FEATURE_COLUMNS
from housing_platform.devtools.tiny_models import RegisteredModels

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def registry(models: RegisteredModels, tmp_path_factory: pytest.TempPathFactory):
    """The state folder's own registry: v1 champion, v2 and v3 registered (same tiny network), nothing held."""
    import mlflow

    home = tmp_path_factory.mktemp("versions_state")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOUSING_HOME", str(home))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.delenv("HOUSING_MLFLOW_ARTIFACT_ROOT", raising=False)
        settings = HousingSettings.from_env()
        registry = ModelRegistry(settings.mlflow_tracking_uri, settings.mlflow_artifact_root)
        files = models.root / "files"
        config = json.loads((files / "training_config.json").read_text())
        example = models.train[list(FEATURE_COLUMNS)].head(5)
        for _ in range(3):
            registry.log_and_register(
                run_id=registry.start_run("versions-cli-tests"),
                artifacts=model_artifacts(home, files / "transformer.skops", files / "network_v1.keras", config,
                                          models.train),
                input_example=example, predictions_example=np.full(len(example), 200_000.0), tags={},
            )
        registry.promote("1")
        yield registry
    mlflow.set_tracking_uri(models.tracking_uri)  # the session's registry again, for the tests after these
    mlflow.set_registry_uri(models.tracking_uri)


def test_an_unknown_version_or_a_missing_registry_exits_2(registry: ModelRegistry, capsys, monkeypatch,
                                                          tmp_path: Path) -> None:
    assert main(["approve", "99"]) == EXIT_NOT_FOUND
    assert "has no version '99'" in capsys.readouterr().err
    monkeypatch.setenv("HOUSING_HOME", str(tmp_path / "empty"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # MLflow sets it when a registry is opened
    assert main(["reject", "1"]) == EXIT_NOT_FOUND
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "empty" / "mlflow" / "mlflow.db").exists()  # no empty registry was created


def test_a_version_that_is_not_pending_is_refused_and_nothing_changes(registry: ModelRegistry, capsys) -> None:
    assert main(["reject", "1"]) == EXIT_REFUSED
    assert "version 1 is not waiting for approval (aliases: champion; approval_status: never held)" in capsys.readouterr().err
    assert registry.champion().version == "1" and APPROVAL_STATUS_TAG not in registry.get_version("1").tags


def test_a_newer_hold_supersedes_the_older_one(registry: ModelRegistry) -> None:
    registry.hold_for_approval("2", "label shift: INLAND +25%")
    assert registry.hold_for_approval("3", "label shift: INLAND +26%").version == "2"
    assert registry.version_by_alias(PENDING_APPROVAL_ALIAS).version == "3"
    older = registry.get_version("2").tags
    assert older[APPROVAL_STATUS_TAG] == "superseded" and older["superseded_by"] == "3"
    assert registry.aliases_of("2") == []


def test_approval_needs_the_pipelines_verified_fast_path(registry: ModelRegistry, capsys) -> None:
    registry.hold_for_approval("3", "label shift: INLAND +26%")
    registry.set_tags("3", {FAST_PATH_VERIFIED_TAG: "false"})
    assert main(["approve", "3"]) == EXIT_REFUSED
    assert "is not tagged fast_path_verified=true" in capsys.readouterr().err
    assert registry.champion().version == "1" and registry.version_by_alias(PENDING_APPROVAL_ALIAS).version == "3"


def test_approval_refuses_a_version_whose_files_changed_since_registration(registry: ModelRegistry, capsys) -> None:
    registry.hold_for_approval("3", "label shift: INLAND +26%")
    registry.set_tags("3", {FAST_PATH_VERIFIED_TAG: "true"})
    source = registry.client.get_model_version(registry.model_name, "3").source
    location = registry.client.get_logged_model(source.removeprefix("models:/")).artifact_location
    (network,) = Path(location.removeprefix("file://")).rglob("*.keras")
    network.write_bytes(network.read_bytes() + b"\0")

    assert main(["approve", "3", "--by", "carol"]) == EXIT_REFUSED

    assert "version 3 fails verification, champion not moved" in capsys.readouterr().err
    assert registry.champion().version == "1"
    assert registry.version_by_alias(PENDING_APPROVAL_ALIAS).version == "3"  # still waiting: nothing was decided
    assert "decided_by" not in registry.get_version("3").tags
