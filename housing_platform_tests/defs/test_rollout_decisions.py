"""Promotion, rejection, waiting and automatic rollback on live evidence: real server, real Dagster, real MLflow.

Each scenario gets its own copy of the tiny registry (v1 champion, v2 = v1 with its output bias moved, so
every prediction differs) and its own model server on loopback with its own capture store. Traffic goes
through `/v1/predict`, the truth comes back through `/v1/feedback` and is admitted as the label gate does
(`LabelReviews.record`, status admitted). The truth is one model's own prediction plus noise a quarter of
the two models' mean gap, so "clearly better" and "clearly worse" follow from the construction, whatever
the tiny network learned on this machine. `challenger_comparison` is materialized on a real Dagster
instance; the rollback is the real `rollback_on_live_quality` sensor evaluated on it. Error-rate scenarios
break the loaded version's scorer in the running server (``server/broken_scorers.py``), so its failures reach
the store's `scoring_failures` the way a broken network's would.
"""

from __future__ import annotations

import time

import dagster as dg
import httpx
import numpy as np
import pytest

from housing_platform.adapters.alias_moves import (
    CHALLENGE,
    CHALLENGER_ALIAS,
    PROMOTE,
    REJECT,
    REJECTED_REASON_TAG,
    ROLLBACK,
    alias_history,
    record_direct_promotion,
    start_rollout,
)
from housing_platform.adapters.capture.failures import failed_rows_by_version, read_failures
from housing_platform.adapters.capture.label_reviews import ADMITTED, LabelReviews, NewBatch
from housing_platform.adapters.mlflow_registry import PREVIOUS_ALIAS, ModelRegistry
from housing_platform.core.schema import MAX_HOUSE_VALUE, MIN_HOUSE_VALUE, TARGET_COLUMN
from housing_platform.defs.monitoring.partitions import today_partition_key
from housing_platform.defs.resources import CaptureStoreResource, HousingStateResource, MLflowResource
from housing_platform.defs.rollout.assets import challenger_comparison
from housing_platform.defs.rollout.checks import DECISION_CHECK
from housing_platform.defs.rollout.sensors import rollback_on_live_quality
from housing_platform.devtools.tiny_models import records
from housing_platform_tests.factories import make_districts
from housing_platform_tests.server.broken_scorers import break_challenger, break_champion, non_finite_output
from housing_platform_tests.server.conftest import ThreadServer
from housing_platform_tests.support import bare_numbers

pytestmark = pytest.mark.slow


class Scenario:
    """A private registry, a server following its champion, and helpers to send labelled traffic."""

    def __init__(self, models, root):
        self.models = models.private_copy(root)
        self.registry = ModelRegistry(self.models.tracking_uri, self.models.artifact_root)
        self.capture_url = f"sqlite:///{root / 'capture.db'}"
        self.root = root
        self.server = ThreadServer(self.models, self.capture_url, poll_interval_seconds=0.2)
        self.seed = 0

    def __enter__(self):
        self.server.__enter__()
        self.client = httpx.Client(base_url=self.server.url, timeout=60)
        return self

    def __exit__(self, *exc):
        self.client.close()
        self.server.__exit__(*exc)

    def ready(self, timeout=30.0, **expected) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            ready = self.client.get("/ready").json()
            if all(ready.get(k) == v for k, v in expected.items()):
                return ready
            assert time.monotonic() < deadline, f"/ready never showed {expected}: {ready}"
            time.sleep(0.05)

    def traffic(self, rows: int, truth_version: str) -> dict:
        """``rows`` new districts scored; truth = ``truth_version``'s prediction + noise; labels admitted."""
        self.seed += 1
        frame = make_districts(rows, seed=self.seed)
        answer = self.client.post("/v1/predict", json={"instances": records(frame)})
        assert answer.status_code == 200, answer.text
        answer = answer.json()
        v1, v2 = (self.models.scorer(v).score(frame) for v in ("1", "2"))
        gap = float(np.mean(np.abs(v1 - v2)))
        truth = {"1": v1, "2": v2}[truth_version]
        noise = np.random.default_rng(self.seed).normal(0, 0.25 * gap, rows)
        labels = np.clip(truth + noise, MIN_HOUSE_VALUE, MAX_HOUSE_VALUE)
        feedback = [{"request_id": rid, TARGET_COLUMN: float(v)} for rid, v in zip(answer["request_ids"], labels)]
        sent = self.client.post("/v1/feedback", json=feedback)
        assert sent.status_code == 200, sent.text
        LabelReviews(self.server.state.store).record(
            [NewBatch("test", "test", "trusted test labels", answer["request_ids"])], status=ADMITTED)
        return answer

    def failing_traffic(self, requests: int, rows: int = 20) -> None:
        """Unlabelled requests of ``rows`` new districts whose answer is refused (422: a non-finite prediction)."""
        for _ in range(requests):
            self.seed += 1
            answer = self.client.post("/v1/predict", json={"instances": records(make_districts(rows, seed=self.seed))})
            assert answer.status_code == 422 and answer.json()["detail"][0]["rule"] == "finite prediction", answer.text

    def sensor_context(self, instance, tmp_path):
        return dg.build_sensor_context(instance=instance, resources={
            "capture_store": CaptureStoreResource(url=self.capture_url),
            "mlflow_tracking": MLflowResource(tracking_uri=self.models.tracking_uri,
                                              artifact_root=self.models.artifact_root),
            "housing_state": HousingStateResource(home=str(tmp_path / "state"), data_path=str(tmp_path / "d.csv")),
        })

    def compare(self, instance) -> dg.AssetCheckEvaluation:
        result = dg.materialize(
            [challenger_comparison], partition_key=today_partition_key(), instance=instance,
            resources={"capture_store": CaptureStoreResource(url=self.capture_url),
                       "mlflow_tracking": MLflowResource(tracking_uri=self.models.tracking_uri,
                                                         artifact_root=self.models.artifact_root)},
        )
        assert result.success
        (evaluation,) = result.get_asset_check_evaluations()
        assert evaluation.check_name == DECISION_CHECK
        (materialization,) = result.asset_materializations_for_node("challenger_comparison")
        assert bare_numbers(evaluation.metadata) == bare_numbers(materialization.metadata) == []
        return evaluation


@pytest.fixture
def scenario(models, tmp_path):
    with Scenario(models, tmp_path) as running:
        yield running


@pytest.fixture(scope="module")
def instance():
    with dg.instance_for_test() as test_instance:
        yield test_instance


def outcome(evaluation) -> str:
    return evaluation.metadata["outcome"].value


def test_a_clearly_better_shadow_challenger_is_promoted_and_served(scenario, instance):
    start_rollout(scenario.registry, "2", "shadow", 0.1, "test", "passed the gate")
    scenario.ready(challenger_version="2", rollout="shadow")
    scenario.traffic(300, truth_version="2")
    assert scenario.server.state.flush_captures(30)
    evaluation = scenario.compare(instance)
    assert outcome(evaluation) == "promote", evaluation.description
    assert evaluation.metadata["ci_upper_raw"].value < 0  # better, not merely not worse
    assert scenario.registry.champion().version == "2"
    assert scenario.registry.version_by_alias(PREVIOUS_ALIAS).version == "1"
    scenario.ready(serving_version="2", challenger_version=None)
    events = alias_history(scenario.registry)
    assert [e.action for e in events] == [CHALLENGE, PROMOTE] and events[1].by.startswith("dagster run ")
    assert events[1].evidence["ci_upper"] < 0


def test_a_clearly_worse_canary_challenger_is_rejected(scenario, instance):
    start_rollout(scenario.registry, "2", "canary", 0.5, "test", "passed the gate")
    scenario.ready(challenger_version="2", rollout="canary")
    answer = scenario.traffic(800, truth_version="1")
    assert set(answer["model_versions"]) == {"1", "2"}
    assert scenario.server.state.flush_captures(30)
    evaluation = scenario.compare(instance)
    assert outcome(evaluation) == "reject" and not evaluation.passed, evaluation.description
    assert scenario.registry.version_by_alias(CHALLENGER_ALIAS) is None
    assert scenario.registry.champion().version == "1"
    assert "margin" in scenario.registry.get_version("2").tags[REJECTED_REASON_TAG]
    assert [e.action for e in alias_history(scenario.registry)] == [CHALLENGE, REJECT]
    scenario.ready(challenger_version=None)


def test_below_the_label_minimum_the_comparison_waits_and_says_how_many_more(scenario, instance):
    start_rollout(scenario.registry, "2", "canary", 0.5, "test", "passed the gate")
    scenario.ready(challenger_version="2")
    scenario.traffic(60, truth_version="1")
    assert scenario.server.state.flush_captures(30)
    evaluation = scenario.compare(instance)
    assert outcome(evaluation) == "wait" and evaluation.passed
    assert evaluation.metadata["more_labelled_rows_needed_raw"].value >= 100  # a 200-row minimum, < 60 rows per model
    assert scenario.registry.version_by_alias(CHALLENGER_ALIAS).version == "2"


def test_a_degraded_direct_promotion_is_rolled_back_and_previous_served(scenario, instance, tmp_path):
    scenario.traffic(400, truth_version="1")  # the champion's record before the promotion
    assert scenario.server.state.flush_captures(30)
    promoted = time.monotonic()
    replaced = scenario.registry.promote("2")  # as the gate does with rollout=direct
    record_direct_promotion(scenario.registry, "2", replaced.version, "test", "rollout=direct")
    scenario.ready(serving_version="2")
    scenario.traffic(400, truth_version="1")  # live labels: the new champion is worse
    assert scenario.server.state.flush_captures(30)
    context = scenario.sensor_context(instance, tmp_path)
    result = rollback_on_live_quality(context)
    assert isinstance(result, dg.SensorResult) and result.run_requests
    (event,) = result.asset_events
    assert event.metadata["action"].value == ROLLBACK and event.metadata["rolled_back"].value == "2"
    assert event.metadata["evidence_ci_lower_raw"].value > 0.05 and bare_numbers(event.metadata) == []
    scenario.ready(serving_version="1")
    served_back = time.monotonic() - promoted
    predicted = scenario.client.post("/v1/predict", json={"instances": records(make_districts(3, seed=99))}).json()
    assert predicted["model_version"] == "1"
    history = alias_history(scenario.registry)
    assert [e.action for e in history] == [PROMOTE, ROLLBACK]
    assert history[1].by == "sensor rollback_on_live_quality" and history[1].evidence["ci_lower"] > 0.05
    assert history[1].reason.startswith("worse than previous beyond the 5% margin")
    # A second tick finds nothing to do: the rolled-back version is nobody's previous.
    assert isinstance(rollback_on_live_quality(context), dg.SkipReason)
    print(f"degraded promotion -> 400 labelled rows -> sensor tick -> previous served: {served_back:.2f} s")


def test_a_canary_challenger_failing_its_rows_is_rejected_on_error_rate(scenario, instance):
    start_rollout(scenario.registry, "2", "canary", 0.5, "test", "passed the gate")
    scenario.ready(challenger_version="2", rollout="canary")
    scenario.traffic(400, truth_version="2")  # on the labels alone the challenger is the better model
    break_challenger(scenario.server.state, non_finite_output, "2")
    scenario.failing_traffic(3)  # 60 rows; the challenger's share of them fail, the champion's are answered
    assert scenario.server.state.flush_captures(30)
    failed = failed_rows_by_version(read_failures(scenario.server.state.store))
    assert set(failed) == {"2"} and failed["2"] > 0  # the champion failed nothing
    evaluation = scenario.compare(instance)
    assert outcome(evaluation) == "reject" and not evaluation.passed, evaluation.description
    reason = scenario.registry.get_version("2").tags[REJECTED_REASON_TAG]
    assert reason.startswith("challenger error rate ") and f"({failed['2']:,} of " in reason, reason
    assert scenario.registry.version_by_alias(CHALLENGER_ALIAS) is None
    assert scenario.registry.champion().version == "1"


def test_a_promotion_failing_its_rows_is_rolled_back_on_error_rate(scenario, instance, tmp_path):
    scenario.traffic(400, truth_version="1")  # previous's record before the promotion
    replaced = scenario.registry.promote("2")
    record_direct_promotion(scenario.registry, "2", replaced.version, "test", "rollout=direct")
    scenario.ready(serving_version="2")
    scenario.traffic(400, truth_version="2")  # live labels: the new champion is as good as previous was
    assert scenario.server.state.flush_captures(30)
    context = scenario.sensor_context(instance, tmp_path)
    kept = rollback_on_live_quality(context)
    assert isinstance(kept, dg.SkipReason) and "keep:" in kept.skip_message  # quality alone: no rollback
    break_champion(scenario.server.state, non_finite_output, "2")
    scenario.failing_traffic(2)  # 40 rows refused: 40 of 440 rows asked of the champion failed
    assert scenario.server.state.flush_captures(30)
    result = rollback_on_live_quality(context)
    assert isinstance(result, dg.SensorResult) and result.run_requests
    (event,) = result.asset_events
    assert event.metadata["action"].value == ROLLBACK and event.metadata["rolled_back"].value == "2"
    assert event.metadata["reason"].value.startswith("champion error rate 9.09% (40 of 440 rows)")
    scenario.ready(serving_version="1")
    predicted = scenario.client.post("/v1/predict", json={"instances": records(make_districts(3, seed=99))})
    assert predicted.status_code == 200 and predicted.json()["model_version"] == "1"
