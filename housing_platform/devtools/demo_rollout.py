"""The demo's safe-rollout chapter: a retrained version in canary earns (or loses) `champion` on live evidence.

After the retraining passed the gate, the new version is `challenger` in canary (the default rollout),
served beside the champion. The demo raises its share the way a person would
(`housing-platform rollout set --share 0.5`, so a few hundred rows per model arrive in seconds), sends
shifted traffic with feedback, lets the label gate judge the labels (`labelled_traffic`) and runs
`challenger_comparison`, round after round while its decision is "wait". The chapter closes when the
comparison decided (promote or reject) and the server serves the resulting champion.
"""

from __future__ import annotations

import time

DEMO_SHARE = 0.5  # the demo's canary share: enough rows for both models in a few rounds
CANARY_ROWS = 600  # rows of labelled traffic per round
MAX_ROUNDS = 3  # rounds of traffic before the demo stops waiting (the asset's own cap is max_wait_days)
SERVE_TIMEOUT_SECONDS = 60


def _ready(server) -> dict:
    import httpx

    try:
        return httpx.get(f"{server.url}/ready", timeout=5.0).json()
    except (httpx.HTTPError, ValueError) as error:
        return {"unreachable": str(error)}


def wait_for_challenger(server, version: str, share: float, timeout_seconds: float = SERVE_TIMEOUT_SECONDS) -> dict:
    """Poll /ready until the server serves ``version`` as canary challenger at ``share``; the last /ready."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        ready = _ready(server)
        if ready.get("challenger_version") == version and ready.get("rollout_share") == share:
            return ready
        if time.monotonic() > deadline:
            return ready
        time.sleep(0.5)


def comparison_outcome(result) -> tuple[str, str]:
    """(outcome, reason) of a `challenger_comparison` run: promote | wait | reject | no challenger | failed."""
    materializations = result.asset_materializations_for_node("challenger_comparison")
    if not materializations:
        return "failed", f"run {result.run_id} materialized no challenger_comparison (see its log)"
    outcome = str(materializations[0].metadata["outcome"].value)
    reasons = [e.description or "" for e in result.get_asset_check_evaluations()]
    return outcome, "; ".join(reasons) or outcome


def canary(defs, instance, registry, server, settings, champion: str, challenger: str,
           story: list[str]) -> tuple[bool, str]:
    """Canary traffic with feedback → label gate → comparison until it decides; (closed, verdict)."""
    from housing_platform.adapters.alias_moves import set_rollout
    from housing_platform.devtools import loop
    from housing_platform.devtools.simulator import simulate

    print(f"\n=== 6. canary: v{challenger} is 'challenger' beside champion v{champion} ===")
    set_rollout(registry, "make demo (as `housing-platform rollout set --share 0.5`)", share=DEMO_SHARE)
    print(f"`housing-platform rollout set --share {DEMO_SHARE:g}`: the challenger answers {DEMO_SHARE:.0%} of rows")
    ready = wait_for_challenger(server, challenger, DEMO_SHARE)
    if ready.get("challenger_version") != challenger:
        return False, (f"v{challenger} is challenger, but the server does not serve it beside v{champion} "
                       f"{SERVE_TIMEOUT_SECONDS} s later (/ready: {ready})")
    outcome, reason = "wait", "no comparison ran"
    for round_number in range(1, MAX_ROUNDS + 1):
        traffic = simulate(server.url, "income_shift", CANARY_ROWS, data_path=settings.data_path, feedback=True,
                           seed=10 + round_number)
        print(f"round {round_number}: {traffic.describe()}")
        labels = loop.judge_labels(defs, instance)
        for evaluation in labels.get_asset_check_evaluations():
            print(f"  {'PASS' if evaluation.passed else 'FAIL'}  labelled_traffic · {evaluation.check_name}: "
                  f"{evaluation.description}")
        outcome, reason = comparison_outcome(loop.compare_challenger(defs, instance))
        print(f"  challenger_comparison: {outcome.upper()}: {reason}")
        if outcome != "wait":
            break
    story.append(f"canary v{challenger} vs v{champion} on {round_number} round(s) of labelled traffic → "
                 f"challenger_comparison: {outcome}")
    if outcome == "promote":
        swapped = server.wait_for_version(challenger, timeout_seconds=SERVE_TIMEOUT_SECONDS)
        story.append(f"v{challenger} is champion (v{champion} is 'previous'); the server serves "
                     f"v{_ready(server).get('model_version')}")
        if not swapped:
            return False, f"v{challenger} was promoted, but the server still serves v{champion}: {_ready(server)}"
        return True, (f"the comparison promoted v{challenger} on live evidence and the server serves it "
                      f"(v{champion} before the drift)")
    if outcome == "reject":
        serving = _ready(server).get("model_version")
        if str(serving) != champion:
            return False, f"the comparison rejected v{challenger}, but the server serves v{serving}, not v{champion}"
        return True, f"the comparison rejected v{challenger} ({reason}); the server serves champion v{champion}"
    return False, (f"after {MAX_ROUNDS} rounds the comparison still says {outcome}: {reason} "
                   f"(v{challenger} stays challenger; the hourly monitoring job decides later)")


# --- the second scenario: `housing-platform demo --scenario rollback` ---------------------------------------

# A deliberately worse version: one epoch at a learning rate far too small to learn anything, let through a
# gate every model passes, and promoted at once (rollout=direct) — what a hasty hand promotion looks like.
ACCEPTING_GATE = {
    "max_rmse_dollars": 1e12, "min_improvement_over_baseline": -1e6, "max_regression_vs_champion": 1e6,
    "max_slice_rmse_ratio": 1e6, "max_golden_regression_vs_champion": 1e6,
}
WORSE_TRAINING = {
    "ops": {
        "trained_model": {"config": {"epochs": 1, "learning_rate": 1e-6}},
        "evaluation_report": {"config": ACCEPTING_GATE},
        "registered_model_version": {"config": {"rollout": "direct"}},
    },
    "loggers": {"console": {"config": {"log_level": "WARNING"}}},
}
BAKING_ROWS = 600  # labelled rows the degraded champion answers before the sensor's tick


def run_rollback_scenario(settings, defs, instance, registry) -> tuple[bool, list[str], str]:
    """Degraded direct promotion → stable traffic with feedback → label gate → rollback sensor → served.

    Returns (closed, story, verdict): closed when the sensor rolled `champion` back to `previous` and the
    server serves it again.
    """
    import dagster as dg

    from housing_platform.adapters.alias_moves import ROLLED_BACK_REASON_TAG
    from housing_platform.defs.rollout.sensors import ROLLBACK_SENSOR
    from housing_platform.devtools import loop
    from housing_platform.devtools.model_server import ModelServer
    from housing_platform.devtools.simulator import simulate

    story: list[str] = []
    good = registry.champion()
    if good is None:
        return False, story, "no champion yet: run `housing-platform demo` first"
    with ModelServer(settings, poll_interval_seconds=1.0) as server:
        print(f"\n=== R1. the good champion v{good.version} answers {BAKING_ROWS} districts with feedback ===")
        print(simulate(server.url, "stable", BAKING_ROWS, data_path=settings.data_path, feedback=True, seed=21)
              .describe())
        print("\n=== R2. a deliberately worse version, promoted with rollout=direct (1 epoch, lr 1e-6, open gate) ===")
        worse = loop.train(defs, instance, WORSE_TRAINING, tags={"housing_platform/trigger": "demo rollback"})
        bad = registry.champion()
        if bad is None or bad.version == good.version:
            return False, story, f"the worse version was not promoted (run {worse.run_id}); v{good.version} stays"
        report = defs.load_asset_value("evaluation_report", instance=instance)
        print(f"v{bad.version} is champion (test RMSE ${report['metrics']['rmse']:,.0f}); v{good.version} is 'previous'")
        story.append(f"v{bad.version} (test RMSE ${report['metrics']['rmse']:,.0f}) promoted directly over v{good.version}")
        if not server.wait_for_version(bad.version, timeout_seconds=SERVE_TIMEOUT_SECONDS):
            return False, story, f"the server never served the degraded v{bad.version}: {_ready(server)}"
        print(f"\n=== R3. v{bad.version} answers {BAKING_ROWS} districts with feedback; the label gate judges them ===")
        print(simulate(server.url, "stable", BAKING_ROWS, data_path=settings.data_path, feedback=True, seed=22)
              .describe())
        for evaluation in loop.judge_labels(defs, instance).get_asset_check_evaluations():
            print(f"  {'PASS' if evaluation.passed else 'FAIL'}  labelled_traffic · {evaluation.check_name}: "
                  f"{evaluation.description}")
        print(f"\n=== R4. sensor {ROLLBACK_SENSOR} ticks ===")
        started = time.monotonic()
        sensor = defs.resolve_sensor_def(ROLLBACK_SENSOR)
        with dg.build_sensor_context(instance=instance, definitions=defs, resources=defs.resources) as context:
            tick = sensor.evaluate_tick(context)
        now = registry.champion()
        print(f"{ROLLBACK_SENSOR}: " + (tick.skip_message or f"rolled back: champion is v{now.version}"))
        if now.version != good.version:
            story.append(f"the sensor kept v{bad.version}: {tick.skip_message}")
            return False, story, f"no rollback: {tick.skip_message}"
        reason = registry.get_version(bad.version).tags.get(ROLLED_BACK_REASON_TAG, "see alias_history")
        swapped = server.wait_for_version(good.version, timeout_seconds=SERVE_TIMEOUT_SECONDS)
        served_after = time.monotonic() - started
        story.append(f"{ROLLBACK_SENSOR} rolled champion back v{bad.version} → v{good.version}; "
                     f"the server served v{good.version} {served_after:.1f} s after the tick")
        if not swapped:
            return False, story, f"rolled back to v{good.version}, but the server serves {_ready(server)}"
        return True, story, (f"the live labels showed v{bad.version} worse than v{good.version}; it was rolled back "
                             f"automatically and the server serves v{good.version} again ({reason[:200]})")
