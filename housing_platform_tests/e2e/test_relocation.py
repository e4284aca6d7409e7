"""The state folder is relocatable: copy it, delete the original, and serve and score from the copy.

The registry part of a state folder (``mlflow/mlflow.db`` + ``mlflow/artifacts``, the layout
``HousingSettings`` derives from ``HOUSING_HOME``) is the session's tiny registry, copied. MLflow
records absolute artifact URIs, so after the move the copy's database points into the deleted
original (asserted below: that is the failure this protects against); opening the registry re-roots
them (``adapters/mlflow_relocation.py``). The same files are read, so the predictions must be
bitwise equal (tolerance 0), from the server and from ``housing-platform score``.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from housing_platform.cli.main import main
from housing_platform.config.settings import HousingSettings
from housing_platform.devtools.processes import NotReady, wait_until
from housing_platform.devtools.tiny_models import RegisteredModels, records
from housing_platform.server.app import create_app
from housing_platform.server.server_config import ServingConfig

pytestmark = pytest.mark.slow


def _serve_and_score(home: Path, rows: pd.DataFrame, source: Path) -> tuple[list[float], pd.Series]:
    """Predictions of the champion in ``home``'s registry: from the server, and from `housing-platform score`."""
    output = home.parent / f"{home.name}-scored.parquet"
    assert main(["score", str(source), str(output)]) == 0
    config = ServingConfig.from_settings(HousingSettings(home=home), poll_interval_seconds=0)
    with TestClient(create_app(config)) as client:
        manager = client.app.state.server.manager
        def loaded() -> None:
            if manager.current is None:
                raise NotReady(f"no version loaded yet ({manager.last_error})")

        wait_until(loaded, what="a version loaded", timeout_seconds=60)
        answer = client.post("/v1/predict", json={"instances": records(rows)})
        assert answer.status_code == 200, answer.text
    return answer.json()["predictions"], pd.read_parquet(output)["prediction"]


def _recorded_uris(database: Path) -> str:
    with sqlite3.connect(database) as conn:
        rows = conn.execute("select artifact_uri from runs union all select artifact_location from logged_models "
                            "union all select storage_location from model_versions").fetchall()
    return " ".join(str(row[0]) for row in rows)


def test_a_copied_state_folder_serves_and_scores_after_the_original_is_deleted(
    models: RegisteredModels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original, moved = tmp_path / "original", tmp_path / "moved"
    shutil.copytree(models.root / "mlflow", original / "mlflow")
    for name in ("MLFLOW_TRACKING_URI", "HOUSING_MLFLOW_ARTIFACT_ROOT", "HOUSING_CAPTURE_URL"):
        monkeypatch.delenv(name, raising=False)
    rows = models.test.head(200)
    source = tmp_path / "districts.csv"
    rows.to_csv(source, index=False)
    try:
        monkeypatch.setenv("HOUSING_HOME", str(original))
        served_before, scored_before = _serve_and_score(original, rows, source)

        shutil.copytree(original, moved)
        shutil.rmtree(original)
        database = moved / "mlflow" / "mlflow.db"
        assert original.as_uri() + "/" in _recorded_uris(database)  # MLflow's absolute URIs: into the deleted folder

        monkeypatch.setenv("HOUSING_HOME", str(moved))
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # mlflow.set_tracking_uri exported the original's
        served_after, scored_after = _serve_and_score(moved, rows, source)
    finally:
        mlflow.set_tracking_uri(models.tracking_uri)  # the session's registry again, for the tests that follow
        mlflow.set_registry_uri(models.tracking_uri)
    assert original.as_uri() + "/" not in _recorded_uris(database)
    assert moved.as_uri() + "/" in _recorded_uris(database)
    assert served_after == served_before  # the same files read: bitwise equal
    pd.testing.assert_series_equal(scored_after, scored_before, check_exact=True)
    assert not original.exists()


def test_a_registry_whose_artifacts_live_elsewhere_is_never_rewritten(models: RegisteredModels, tmp_path: Path) -> None:
    from housing_platform.adapters.mlflow_relocation import reroot_moved_registry

    database = tmp_path / "mlflow" / "mlflow.db"
    database.parent.mkdir()
    shutil.copyfile(models.root / "mlflow" / "mlflow.db", database)
    before = _recorded_uris(database)
    assert reroot_moved_registry(database, (tmp_path / "elsewhere" / "artifacts").as_uri()) == {}
    assert reroot_moved_registry(database, "s3://bucket/artifacts") == {}
    assert _recorded_uris(database) == before
    changed = reroot_moved_registry(database, (tmp_path / "mlflow" / "artifacts").as_uri())
    assert changed["model_versions.storage_location"] == len(models.versions)
    assert (tmp_path / "mlflow" / "artifacts").as_uri() + "/" in _recorded_uris(database)


def test_stored_asset_values_hold_no_path_into_the_state_folder_and_follow_it(tmp_path: Path) -> None:
    import dagster as dg

    from housing_platform.defs.io_manager import STATE_FOLDER_TOKEN, ParquetJsonIOManager

    original, moved = tmp_path / "original", tmp_path / "moved"
    model = original / "artifacts" / "trained_model" / "network.keras"
    value = {"path": str(model), "files": [str(model), "/elsewhere/kept.txt"], "epochs": 3}
    key = dg.AssetKey("trained_model")
    ParquetJsonIOManager(base_dir=str(original / "storage")).handle_output(
        dg.build_output_context(asset_key=key), value
    )
    stored = (original / "storage" / "trained_model.json").read_text()
    assert str(original) not in stored and f"{STATE_FOLDER_TOKEN}/artifacts/trained_model/network.keras" in stored

    shutil.copytree(original, moved)
    shutil.rmtree(original)
    loaded = ParquetJsonIOManager(base_dir=str(moved / "storage")).load_input(dg.build_input_context(asset_key=key))
    moved_model = str(moved / "artifacts" / "trained_model" / "network.keras")
    assert loaded == {"path": moved_model, "files": [moved_model, "/elsewhere/kept.txt"], "epochs": 3}
