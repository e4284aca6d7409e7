"""`make demo` says the loop closed only when the server serves the new champion; otherwise it names why.

Step 5 of the demo (`_retrain_and_swap`) with the sensor tick, the retraining run, the registry and the
server replaced by stand-ins, one per way the loop can stay open (the whole loop runs for real in
`e2e/test_loop.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pytest

from housing_platform.adapters.mlflow_registry import PENDING_REASON_TAG
from housing_platform.devtools import demo, loop

REQUEST = dg.RunRequest(
    run_key="drift_report:no_feature_drift:2026-11-20:7",
    tags={
        "housing_platform/trigger_check": "drift_report:no_feature_drift",
        "housing_platform/trigger_partition": "2026-11-20",
        "housing_platform/trigger_evaluation": "7",
    },
)


@dataclass
class Version:
    version: str
    tags: dict = field(default_factory=dict)

    @property
    def model_uri(self) -> str:
        return f"models:/housing_price_model/{self.version}"


@dataclass
class Registry:
    versions: list[str]  # what champion() answers, call after call

    def champion(self) -> Version:
        return Version(self.versions.pop(0) if len(self.versions) > 1 else self.versions[0])

    def get_version(self, version: str) -> Version:
        return Version(version, tags={PENDING_REASON_TAG: "INLAND median +25%"})


@dataclass
class Server:
    serving: str
    swaps: bool
    log_path: Path
    url: str = "http://127.0.0.1:9"  # nothing listens: /ready is unreachable

    def serving_version(self) -> str:
        return self.serving

    def wait_for_version(self, version: str, timeout_seconds: float) -> bool:
        if self.swaps:
            self.serving = version
        return self.swaps


@dataclass
class Retraining:
    gate_passed: bool = True
    reached_gate: bool = True
    run_id: str = "r" * 32
    checks: list = field(default_factory=list)
    held: bool = False  # registered_model_version held the new version in pending_approval (label shift)
    challenger: bool = False  # registered_model_version made the new version `challenger` (rollout canary)

    @property
    def success(self) -> bool:
        return self.reached_gate and self.gate_passed

    def asset_materializations_for_node(self, name: str) -> list:
        metadata = {"version": 2, "pending_approval": self.held, "challenger": self.challenger}
        return [dg.AssetMaterialization(asset_key=name, metadata=metadata)] if self.reached_gate else []

    def get_asset_check_evaluations(self) -> list:
        return [
            dg.AssetCheckEvaluation(asset_key=dg.AssetKey("evaluation_report"), check_name="rmse_within_limit",
                                    passed=self.gate_passed, description="rmse")
        ]


@pytest.fixture
def step(monkeypatch, tmp_path):
    """Run step 5 with a tick, a retraining run, a registry and a server; returns (closed, verdict)."""
    monkeypatch.setattr(demo, "_print_comparison", lambda defs, instance: None)
    log = tmp_path / "server.log"
    log.write_text("SkewError: the fast path differs (keeping version 1)\n")

    def run(tick: loop.SensorTick, retraining: Retraining, registry: Registry, server_swaps: bool = True):
        monkeypatch.setattr(loop, "tick_sensor", lambda defs, instance: tick)
        monkeypatch.setattr(loop, "retrain", lambda defs, instance, request, run_config=None: retraining)
        server = Server(serving="1", swaps=server_swaps, log_path=log)
        return demo._retrain_and_swap(None, None, registry, server, story=[])

    return run


def test_the_loop_closes_when_the_server_serves_the_promoted_champion(step) -> None:
    closed, verdict = step(loop.SensorTick([REQUEST], None), Retraining(), Registry(["1", "2"]))
    assert closed
    assert "serves v2, the new champion" in verdict


def test_a_challenger_in_canary_is_judged_by_the_canary_chapter_whose_verdict_is_the_loops(step, monkeypatch) -> None:
    from housing_platform.devtools import demo_rollout

    calls = []

    def canary(defs, instance, registry, server, settings, champion, challenger, story):
        calls.append((champion, challenger))
        return False, "after 3 rounds the comparison still says wait"

    monkeypatch.setattr(demo_rollout, "canary", canary)
    closed, verdict = step(loop.SensorTick([REQUEST], None), Retraining(challenger=True), Registry(["1", "1"]))
    assert calls == [("1", "2")]  # the champion before the retraining and the new challenger
    assert not closed and "still says wait" in verdict


def test_the_loop_is_open_when_the_server_does_not_swap_and_the_verdict_names_both_versions(step) -> None:
    closed, verdict = step(loop.SensorTick([REQUEST], None), Retraining(), Registry(["1", "2"]), server_swaps=False)
    assert not closed
    assert "v2 is champion, but the server still serves v1" in verdict
    assert "SkewError" in verdict  # the server's own reason, from its log


def test_the_loop_is_open_when_the_gate_refuses_the_candidate(step) -> None:
    closed, verdict = step(loop.SensorTick([REQUEST], None), Retraining(gate_passed=False), Registry(["1", "1"]))
    assert not closed
    assert "the gate refused the candidate (rmse_within_limit)" in verdict and "v1 stays champion" in verdict


def test_the_loop_is_open_when_the_new_version_waits_for_approval_and_the_verdict_says_how_to_decide(step) -> None:
    closed, verdict = step(loop.SensorTick([REQUEST], None), Retraining(held=True), Registry(["1", "1"]))
    assert not closed
    assert "v2 passed the gate but its training labels shifted" in verdict and "v1 stays champion" in verdict
    assert "housing-platform approve 2" in verdict and "reject 2" in verdict


def test_the_loop_is_open_when_the_retraining_stops_before_the_gate(step) -> None:
    closed, verdict = step(loop.SensorTick([REQUEST], None), Retraining(reached_gate=False), Registry(["1"]))
    assert not closed and "failed before the gate" in verdict and "v1 stays champion" in verdict


def test_the_loop_is_open_when_the_sensor_launches_no_retraining_and_says_why(step) -> None:
    reason = "drift_report:no_feature_drift (...) is open, but the cooldown ...; next retraining allowed at 2026-11-20"
    closed, verdict = step(loop.SensorTick([], reason), Retraining(), Registry(["1"]))
    assert not closed
    assert "no retraining was launched" in verdict and reason in verdict and "make clean" in verdict
