"""When no version behind the model URI can be loaded, the server answers from the heuristic baseline,
flagged in every response, in ``/ready`` (200, degraded), in ``/metrics`` and in the captures; when a
real version loads, the fallback stops. Off, or without a baseline file, it is 503 as before.

Real components throughout: the session's tiny registry, the baseline stored with its version 1 (read
back through the registry, hash-checked), the real app and capture store. "No version can be loaded"
is an alias that names no version yet; pointing it at version 1 is the recovery.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from housing_platform.adapters.capture.store import CaptureStore
from housing_platform.adapters.fallback_store import store_fallback_baseline
from housing_platform.adapters.file_store import LocalFileStore
from housing_platform.core.schema import CATEGORICAL_COLUMN
from housing_platform.devtools.processes import NotReady, wait_until
from housing_platform.devtools.tiny_models import RegisteredModels, records
from housing_platform.scoring.fallback import FALLBACK_VERSION
from housing_platform.server.app import create_app
from housing_platform.server.server_config import ServingConfig

pytestmark = pytest.mark.slow

ALIAS = "fallback-test"  # names no version until the recovery step


@pytest.fixture(scope="module")
def baseline(models: RegisteredModels, tmp_path_factory) -> tuple[str, dict]:
    """Version 1's stored baseline, written where the registry asset writes the champion's at promotion."""
    stored = models.registry().fallback_baseline(models.versions[0])
    assert stored is not None and set(stored["medians"]) == set(models.train[CATEGORICAL_COLUMN].unique())
    return store_fallback_baseline(LocalFileStore(tmp_path_factory.mktemp("state")), stored), stored


def _config(models: RegisteredModels, tmp_path, **overrides) -> ServingConfig:
    values = {
        "model_uri": f"models:/{models.model_name}@{ALIAS}", "tracking_uri": models.tracking_uri,
        "artifact_root": models.artifact_root, "capture_url": f"sqlite:///{tmp_path / 'capture.db'}",
        "poll_interval_seconds": 0, "load_retry_seconds": 600,  # only the test's check_now() retries
    }
    return ServingConfig(**{**values, **overrides})


def _first_attempt_failed(client: TestClient) -> None:
    manager = client.app.state.server.manager
    def failed() -> None:
        if manager.last_error is None:
            raise NotReady("the first load attempt has not failed yet")

    wait_until(failed, what="the first load attempt to fail", timeout_seconds=60)


def test_no_loadable_version_answers_from_the_baseline_flagged_until_a_version_loads(
    models, baseline, tmp_path
) -> None:
    path, stored = baseline
    rows = models.test.head(7)
    registry = models.registry()
    try:
        with TestClient(create_app(_config(models, tmp_path, fallback_baseline_path=path))) as client:
            _first_attempt_failed(client)
            ready = client.get("/ready")
            assert ready.status_code == 200
            assert ready.json()["degraded"] is True and ready.json()["model_version"] == FALLBACK_VERSION
            assert ALIAS in ready.json()["detail"] and path in ready.json()["detail"]

            answer = client.post("/v1/predict", json={"instances": records(rows)})
            assert answer.status_code == 200
            body = answer.json()
            assert body["fallback"] is True and body["model_version"] == FALLBACK_VERSION
            # A table lookup: exactly the stored median of each row's category.
            assert body["predictions"] == [stored["medians"][c] for c in rows[CATEGORICAL_COLUMN]]
            metrics = client.get("/metrics").text
            assert "housing_fallback_rows_total 7.0" in metrics and "housing_fallback_active 1.0" in metrics

            state = client.app.state.server
            assert state.flush_captures(30)
            captured = CaptureStore(state.config.capture_url).read_captures()
            assert set(captured["model_version"]) == {FALLBACK_VERSION} and len(captured) == len(rows)

            registry.client.set_registered_model_alias(models.model_name, ALIAS, models.versions[0])
            assert state.manager.check_now()
            answer = client.post("/v1/predict", json={"instances": records(rows)}).json()
            assert answer["model_version"] == models.versions[0] and "fallback" not in answer
            assert answer["predictions"] != body["predictions"]
            ready = client.get("/ready").json()
            assert ready["degraded"] is False and ready["model_version"] == models.versions[0]
            metrics = client.get("/metrics").text
            assert "housing_fallback_rows_total 7.0" in metrics and "housing_fallback_active 0.0" in metrics
    finally:
        registry.client.delete_registered_model_alias(models.model_name, ALIAS)


@pytest.mark.parametrize("how", ["switched off", "no baseline file"])
def test_without_the_fallback_no_loadable_version_is_503(models, baseline, tmp_path, how) -> None:
    path, _ = baseline
    overrides = ({"fallback_on_no_model": False, "fallback_baseline_path": path} if how == "switched off"
                 else {"fallback_baseline_path": str(tmp_path / "server" / "fallback_baseline.json")})
    with TestClient(create_app(_config(models, tmp_path, **overrides))) as client:
        _first_attempt_failed(client)
        ready = client.get("/ready")
        assert ready.status_code == 503 and ALIAS in ready.json()["detail"]
        if how == "no baseline file":
            assert overrides["fallback_baseline_path"] in ready.json()["fallback_unavailable"]
        assert client.post("/v1/predict", json={"instances": records(models.test.head(2))}).status_code == 503
        assert "housing_fallback_active 0.0" in client.get("/metrics").text


def test_monitoring_leaves_the_fallback_answers_out() -> None:
    import pandas as pd

    from housing_platform.defs.monitoring.assets import _serving_version, model_answers

    captured = pd.DataFrame({"model_version": [FALLBACK_VERSION] * 5 + ["3"] * 2, "prediction": range(7)})
    kept = model_answers(captured)
    assert list(kept["model_version"]) == ["3", "3"] and _serving_version(kept) == "3"
    assert model_answers(captured.head(0)).empty
