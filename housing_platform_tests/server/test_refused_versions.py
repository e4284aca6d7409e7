"""A champion the server cannot serve: the old version keeps serving, the refused one is retried only
after an exponential back-off (or at once when the alias moves), and `/ready` and `/metrics` say so.

The registry, the registered versions and the pyfunc are real (the tiny models); version 2's fast path
carries one wrong weight, so the real verification (`verify_against` on the probe rows) refuses it
with a real ``SkewError``. The loader is the server's injection seam; it counts its calls.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

import pytest

from housing_platform.devtools.tiny_models import RegisteredModels, records
from housing_platform.scoring.scorer import FastScorer
from housing_platform.scoring.verification import load_fast_scorer, verify_against
from housing_platform.server.model_manager import LOAD_ERROR, REFUSAL_KINDS, SKEW, ModelManager
from housing_platform.server.server_config import ServingConfig

pytestmark = pytest.mark.slow


class RefusingLoader:
    """The server's loader, except that version 2's fast path adds $1,000 to every prediction (a wrong
    output bias), then is verified against the real pyfunc exactly as ``load_fast_scorer`` does: refused."""

    def __init__(self, models: RegisteredModels):
        refused = models.versions[1]
        self.refused_uri = f"models:/{models.model_name}/{refused}"
        self.calls: list[str] = []
        self._lock = threading.Lock()
        scorer = load_fast_scorer(models.model_source(refused), verify=False)
        last = scorer.layers[-1]  # its folded output transform makes the bias dollars: every prediction + $1,000
        wrong = dataclasses.replace(last, bias=last.bias + 1_000.0)
        self.mutant = dataclasses.replace(scorer, layers=[*scorer.layers[:-1], wrong])
        self.python_model = models.load_pyfunc(refused).unwrap_python_model()

    def __call__(self, uri: str) -> FastScorer:
        with self._lock:
            self.calls.append(uri)
        if uri == self.refused_uri:
            verify_against(self.mutant, self.python_model)  # raises SkewError
            raise AssertionError("the mutated fast path passed the verification")
        return load_fast_scorer(uri)

    def attempts(self) -> int:
        with self._lock:
            return self.calls.count(self.refused_uri)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def loader(models: RegisteredModels) -> RefusingLoader:
    return RefusingLoader(models)


@pytest.fixture
def champion_restored(models: RegisteredModels):
    registry = models.registry()
    yield registry
    registry.promote(models.versions[0])


def test_a_refused_version_is_retried_only_after_an_exponential_backoff_capped(
    models, loader, champion_restored, caplog
) -> None:
    first, second = models.versions
    clock = Clock()
    manager = ModelManager(f"models:/{models.model_name}@champion", models.registry, loader=loader, clock=clock,
                           backoff_seconds=10.0, backoff_max_seconds=25.0)
    assert manager.check_now() and manager.current.version == first
    champion_restored.promote(second)
    caplog.set_level(logging.WARNING, logger="housing_platform.server.model_manager")

    attempts_at = []
    for step in range(60):  # 60 polls, 1 s apart on the manager's clock
        assert manager.check_now() is False
        attempts_at.append(loader.attempts())
        clock.now += 1.0

    # Attempt 1 at once, then after 10 s, 20 s, 25 s (the cap), 25 s: at polls 0, 10, 30, 55.
    assert [attempts_at.index(n) for n in range(1, 5)] == [0, 10, 30, 55]
    assert attempts_at[-1] == 4
    assert manager.current.version == first
    refused = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 4  # one line per attempt, none for the polls in between
    assert all(f"version {second} refused (skew" in r.getMessage() and "SkewError" in r.getMessage() for r in refused)
    assert "keeping version 1" in refused[0].getMessage() and "next attempt in 10 s" in refused[0].getMessage()
    status = manager.status()
    assert (status.serving_version, status.target_version, status.differs) == (first, second, True)
    assert status.refusal.kind == SKEW and status.refusal.attempts == 4


def test_a_moved_alias_is_tried_at_once_and_ends_the_refusal(models, loader, champion_restored) -> None:
    first, second = models.versions
    champion_restored.promote(second)  # the refused version is champion from the start: nothing to serve
    manager = ModelManager(f"models:/{models.model_name}@champion", models.registry, loader=loader, clock=Clock(),
                           backoff_seconds=600.0, backoff_max_seconds=600.0)
    before = loader.attempts()
    assert manager.check_now() is False and manager.current is None
    assert loader.attempts() == before + 1 and manager.status().differs

    champion_restored.promote(first)  # another version: loaded at once, whatever version 2's back-off
    assert manager.check_now() and manager.current.version == first
    assert manager.status().reason is None and manager.status().refusal is None and not manager.status().differs
    champion_restored.promote(second)  # moved again: tried at once, not after the 600 s back-off
    manager.check_now()
    assert loader.attempts() == before + 2
    assert manager.status().refusal.attempts == 1


def _config(models: RegisteredModels, tmp_path, **overrides) -> ServingConfig:
    return ServingConfig(model_uri=f"models:/{models.model_name}@champion", tracking_uri=models.tracking_uri,
                         artifact_root=models.artifact_root, capture_url=f"sqlite:///{tmp_path / 'capture.db'}",
                         **overrides)


def _metric(text: str, sample: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(sample + " "))
    return float(line.rsplit(" ", 1)[1])


def _wait(predicate, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_ready_and_metrics_show_the_served_version_the_champion_and_why_they_differ(
    models, loader, champion_restored, tmp_path
) -> None:
    from fastapi.testclient import TestClient

    from housing_platform.server.app import create_app

    first, second = models.versions
    config = _config(models, tmp_path, poll_interval_seconds=0.05, refused_load_backoff_seconds=600.0,
                     refused_load_backoff_max_seconds=600.0)
    with TestClient(create_app(config, loader=loader)) as client:
        _wait(lambda: client.get("/ready").status_code == 200)
        ready = client.get("/ready").json()
        assert (ready["serving_version"], ready["champion_version"]) == (first, first)
        assert ready["serving_matches_champion"] is True and ready["mismatch_reason"] is None
        assert _metric(client.get("/metrics").text, "housing_model_serving_differs_from_alias") == 0.0

        before = loader.attempts()
        champion_restored.promote(second)
        _wait(lambda: client.get("/ready").json()["champion_version"] == second
              and client.get("/ready").json()["mismatch_reason"] is not None)
        time.sleep(0.5)  # ten more polls of the alias: none may load version 2 again
        ready = client.get("/ready").json()
        metrics = client.get("/metrics").text
        predicted = client.post("/v1/predict", json={"instances": records(models.test.head(1))})

        assert loader.attempts() == before + 1
        assert ready["model_version"] == ready["serving_version"] == first
        assert ready["champion_version"] == second and ready["serving_matches_champion"] is False
        assert f"version {second} refused (skew, attempt 1): SkewError" in ready["mismatch_reason"]
        assert "beyond float32 rounding" in ready["mismatch_reason"] and ready["next_load_attempt_at"]
        assert predicted.json()["model_version"] == first
        assert _metric(metrics, "housing_model_serving_differs_from_alias") == 1.0
        assert _metric(metrics, f'housing_model_refused_loads_total{{reason="{SKEW}"}}') == 1.0
        for kind in set(REFUSAL_KINDS) - {SKEW}:
            assert _metric(metrics, f'housing_model_refused_loads_total{{reason="{kind}"}}') == 0.0

        champion_restored.promote(first)
        _wait(lambda: client.get("/ready").json()["champion_version"] == first)
        ready = client.get("/ready").json()
        assert ready["serving_matches_champion"] is True and ready["mismatch_reason"] is None
        assert _metric(client.get("/metrics").text, "housing_model_serving_differs_from_alias") == 0.0


def test_a_load_error_is_counted_under_its_own_reason(models, champion_restored, tmp_path) -> None:
    from fastapi.testclient import TestClient

    from housing_platform.server.app import create_app

    def unreachable(uri: str):
        if uri.endswith(f"/{models.versions[1]}"):
            raise OSError("artifact store unreachable")
        return load_fast_scorer(uri)

    champion_restored.promote(models.versions[1])
    config = _config(models, tmp_path, load_retry_seconds=0.05, refused_load_backoff_seconds=600.0,
                     refused_load_backoff_max_seconds=600.0)
    with TestClient(create_app(config, loader=unreachable)) as client:
        _wait(lambda: client.get("/ready").json().get("mismatch_reason"))
        ready = client.get("/ready")
        metrics = client.get("/metrics").text

    assert ready.status_code == 503 and ready.json()["serving_version"] is None
    assert ready.json()["champion_version"] == models.versions[1]
    assert "artifact store unreachable" in ready.json()["mismatch_reason"]
    assert _metric(metrics, f'housing_model_refused_loads_total{{reason="{LOAD_ERROR}"}}') == 1.0
    assert _metric(metrics, "housing_model_serving_differs_from_alias") == 1.0


def test_the_backoff_cap_may_not_be_below_its_base(models, tmp_path) -> None:
    with pytest.raises(ValueError, match=r"refused_load_backoff_max_seconds \(5\) must be at least .* \(10\)"):
        _config(models, tmp_path, refused_load_backoff_seconds=10.0, refused_load_backoff_max_seconds=5.0)

