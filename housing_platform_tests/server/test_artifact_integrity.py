"""Model files are checked against the sha256 the registry recorded before a version is served or
batch-scored; a missing tracking database is an error naming it, never a new empty registry.

A throwaway registry gets the tiny model's real files twice (version 1, champion; version 2). Then
version 2's stored ``.keras`` file is rewritten with its output bias raised — what issue 13 did by
hand (a prediction moved from $392,078 to $449,734). Loading that file directly still "works" and
moves every prediction; loading the version through the platform is refused naming the file and
both hashes, the server keeps serving version 1 and says why in ``/ready`` and ``/metrics``, and
``housing-platform score`` exits 1 without writing its output.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import mlflow
import numpy as np
import pytest
from fastapi.testclient import TestClient

from housing_platform.adapters.mlflow_registry import (
    MODEL_NAME,
    MissingTrackingDatabase,
    ModelRegistry,
    model_artifacts,
)
from housing_platform.cli.main import EXIT_NO_MODEL, EXIT_SERVER_FAILED, main
from housing_platform.core import model as keras_model
from housing_platform.core.schema import FEATURE_COLUMNS
from housing_platform.devtools.processes import NotReady, wait_until
from housing_platform.devtools.tiny_models import RegisteredModels, records
from housing_platform.scoring.integrity import FILES_SHA256_TAG, ArtifactIntegrityError, sha256_of
from housing_platform.scoring.verification import load_fast_scorer
from housing_platform.server.app import create_app
from housing_platform.server.model_manager import INTEGRITY, ModelManager
from housing_platform.server.server_config import ServingConfig

pytestmark = pytest.mark.slow

# Added to the output unit (a standardised target, std ≈ $115k): every prediction moves by tens of
# thousands of dollars — far outside any rounding, so "the tamper changes answers" is unambiguous.
OUTPUT_BIAS_SHIFT = 0.5
MIN_PREDICTION_MOVE_DOLLARS = 10_000.0


def stored_file(registry: ModelRegistry, version: str, suffix: str) -> Path:
    """The file ending in ``suffix`` among the stored artifacts of ``version`` (in the artifact store itself)."""
    source = registry.client.get_model_version(registry.model_name, version).source
    location = registry.client.get_logged_model(source.removeprefix("models:/")).artifact_location
    (found,) = Path(location.removeprefix("file://")).rglob(f"*{suffix}")
    return found


def _loaded(manager: ModelManager) -> None:
    if manager.current is None:
        raise NotReady(f"no version loaded yet ({manager.last_error})")


@pytest.fixture(scope="module")
def tampered(models: RegisteredModels, tmp_path_factory):
    """A registry with version 1 (champion) and version 2 whose stored network was rewritten afterwards."""
    root = tmp_path_factory.mktemp("integrity")
    tracking_uri = f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"
    registry = ModelRegistry(tracking_uri, (root / "mlflow" / "artifacts").as_uri())
    files = models.root / "files"
    config = keras_model.TrainingConfig(epochs=1).model_dump(mode="json")
    for _ in range(2):
        registry.log_and_register(
            run_id=registry.start_run("integrity-tests"),
            artifacts=model_artifacts(root, files / "transformer.skops", files / "network_v1.keras", config, models.train),
            input_example=models.train[list(FEATURE_COLUMNS)].head(2),
            predictions_example=np.full(2, 200_000.0),
            tags={"purpose": "integrity tests"},
        )
    registry.promote("1")
    network = stored_file(registry, "2", ".keras")
    recorded = sha256_of(network)
    loaded = keras_model.load_model(network)
    kernel, bias = loaded.get_layer("output").get_weights()
    loaded.get_layer("output").set_weights([kernel, bias + OUTPUT_BIAS_SHIFT])
    keras_model.save_model(loaded, network.with_suffix(".tmp.keras"))
    shutil.move(network.with_suffix(".tmp.keras"), network)
    yield registry, network, recorded, sha256_of(network)
    mlflow.set_tracking_uri(models.tracking_uri)  # the session's registry again, for the tests that follow
    mlflow.set_registry_uri(models.tracking_uri)


def test_registration_records_the_sha256_of_every_model_file(tampered) -> None:
    registry, network, recorded, _ = tampered
    manifest = registry.get_version("1").tags[FILES_SHA256_TAG]
    for name in ("MLmodel", "pyfunc_model.py", "artifacts/transformer.skops", "artifacts/network_v1.keras",
                 "artifacts/training_config.json", "artifacts/feature_ranges.json", "requirements.txt"):
        assert f'"{name}":' in manifest
    assert recorded in manifest


def test_a_tampered_network_moves_predictions_and_its_version_is_refused_naming_file_and_hashes(
    tampered, models
) -> None:
    registry, network, recorded, found = tampered
    assert recorded != found
    row = models.test.head(1)
    honest = load_fast_scorer(f"models:/{MODEL_NAME}/1").score(row)[0]
    # Read without the platform's check, the rewritten file answers — differently.
    raw = mlflow.pyfunc.load_model(str(network.parent.parent)).predict(row[list(FEATURE_COLUMNS)])[0]
    assert abs(raw - honest) > MIN_PREDICTION_MOVE_DOLLARS, (honest, raw)
    with pytest.raises(ArtifactIntegrityError) as refused:
        load_fast_scorer(f"models:/{MODEL_NAME}/2")
    message = str(refused.value)
    assert f"artifacts/{network.name}: sha256 {recorded} recorded, {found} found" in message


def test_the_server_keeps_serving_the_old_version_and_shows_the_integrity_refusal(tampered, models, tmp_path) -> None:
    registry, network, recorded, found = tampered
    config = ServingConfig(
        model_uri=f"models:/{MODEL_NAME}@champion", tracking_uri=registry.tracking_uri,
        artifact_root=registry.artifact_root, capture_url=f"sqlite:///{tmp_path / 'capture.db'}",
        poll_interval_seconds=0,
    )
    try:
        with TestClient(create_app(config)) as client:
            state = client.app.state.server
            wait_until(lambda: _loaded(state.manager), what="version 1 served", timeout_seconds=60)
            registry.promote("2")
            assert not state.manager.check_now()
            assert state.manager.current.version == "1"
            ready = client.get("/ready").json()
            assert ready["serving_version"] == "1" and ready["champion_version"] == "2"
            assert f"refused ({INTEGRITY}, attempt 1)" in ready["mismatch_reason"]
            assert network.name in ready["mismatch_reason"]
            assert recorded in ready["mismatch_reason"] and found in ready["mismatch_reason"]
            metrics = client.get("/metrics").text
            assert f'housing_model_refused_loads_total{{reason="{INTEGRITY}"}} 1.0' in metrics
            answer = client.post("/v1/predict", json={"instances": records(models.test.head(3))})
            assert answer.status_code == 200 and answer.json()["model_version"] == "1"
    finally:
        registry.promote("1")


def test_score_cli_refuses_a_tampered_version_and_writes_nothing(tampered, models, tmp_path, monkeypatch, capsys) -> None:
    registry, network, recorded, found = tampered
    monkeypatch.setenv("HOUSING_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.tracking_uri)
    source, output = tmp_path / "in.csv", tmp_path / "out.parquet"
    models.test.head(20).to_csv(source, index=False)
    code = main(["score", str(source), str(output), "--model-uri", f"models:/{MODEL_NAME}/2"])
    assert code == EXIT_NO_MODEL
    error = capsys.readouterr().err
    assert network.name in error and recorded in error and found in error
    assert not output.exists()
    assert main(["score", str(source), str(output), "--model-uri", f"models:/{MODEL_NAME}/1"]) == 0
    assert output.exists()


def test_a_missing_tracking_database_is_an_error_naming_it_and_is_not_created(tmp_path, models, monkeypatch, capsys) -> None:
    database = tmp_path / "home" / "mlflow" / "mlflow.db"
    tracking_uri = f"sqlite:///{database}"
    try:
        with pytest.raises(MissingTrackingDatabase, match=str(database)):
            ModelRegistry(tracking_uri, (tmp_path / "artifacts").as_uri(), must_exist=True)
        manager = ModelManager(
            f"models:/{MODEL_NAME}@champion",
            lambda: ModelRegistry(tracking_uri, (tmp_path / "artifacts").as_uri(), must_exist=True),
        )
        assert not manager.check_now()
        assert str(database) in manager.status().reason and "does not exist" in manager.status().reason
        assert "has the alias" not in manager.status().reason

        monkeypatch.setenv("HOUSING_HOME", str(tmp_path / "home"))
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        source = tmp_path / "in.csv"
        models.test.head(5).to_csv(source, index=False)
        assert main(["score", str(source), str(tmp_path / "out.parquet")]) == EXIT_NO_MODEL
        assert str(database) in capsys.readouterr().err
        with socket.socket() as taken:  # were the check gone, uvicorn could not bind either: a failure, not a hang
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            assert main(["serve", "--port", str(taken.getsockname()[1])]) == EXIT_SERVER_FAILED
        assert str(database) in capsys.readouterr().err
        assert not database.exists()
    finally:
        mlflow.set_tracking_uri(models.tracking_uri)
        mlflow.set_registry_uri(models.tracking_uri)
