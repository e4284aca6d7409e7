"""`make demo`: the whole loop on the embedded default, then a short story of what happened.

train → start the server in the background → stable traffic → monitor → shifted traffic with
feedback → monitor (the checks fail) → sensor tick → retraining run → the gate decides → the new
version is `challenger` in canary (the default rollout, ``devtools/demo_rollout.py``) → shifted traffic
with feedback → the label gate (`labelled_traffic`) → `challenger_comparison` promotes or rejects it →
the server serves the resulting champion. Everything is recorded in the persistent instance and state folder
(``$HOUSING_HOME``), so it is all there to browse afterwards with `make dev` and `make mlflow-ui`.

The demo succeeds only when the loop closes: the sensor launched a retraining, the gate passed the
candidate, the comparison decided on live evidence (promote or reject), and the server serves the
champion it decided on (with ``rollout=direct``: the gate promoted it and the server serves it). Otherwise it says which of these did not happen,
naming the versions, and exits with ``EXIT_LOOP_OPEN``; it never prints success then.
"""

from __future__ import annotations

import os
import time

from housing_platform.config.environment import apply_process_defaults
from housing_platform.config.settings import HousingSettings
from housing_platform.devtools import demo_rollout

STABLE_ROWS = 1_000
SHIFTED_ROWS = 1_500
SWAP_TIMEOUT_SECONDS = 60
EXIT_LOOP_CLOSED = 0
EXIT_LOOP_OPEN = 1  # no training, no retraining launched, the gate refused, or the server did not swap
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _print_checks(result, prefix: str = "  ") -> None:
    for evaluation in result.get_asset_check_evaluations():
        status = "PASS" if evaluation.passed else "FAIL"
        print(f"{prefix}{status}  {evaluation.asset_key.to_user_string()} · {evaluation.check_name}: {evaluation.description}")


def _print_comparison(defs, instance) -> None:
    from housing_platform.defs.training.report_tables import comparison_table

    report = defs.load_asset_value("evaluation_report", instance=instance)
    table = comparison_table(report["metrics"], report["baselines"], report.get("champion"))
    print(f"\ntest split ({report['test_rows']:,} rows): candidate vs. baselines vs. current champion")
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.3f}"))


def _requested(request) -> str:
    tags = request.tags
    return (f"requested a retraining run for {tags['housing_platform/trigger_check']} (partition "
            f"{tags['housing_platform/trigger_partition']}, evaluation {tags['housing_platform/trigger_evaluation']})")


def _serving(server) -> str:
    """The version the server says it serves, or why it cannot say."""
    import httpx

    try:
        return f"v{server.serving_version()}"
    except httpx.HTTPError as error:
        return f"nothing it can report ({error})"


def _server_state(server) -> str:
    """What the server says about itself (/ready) and the last lines of its log, for a failed swap."""
    import httpx

    try:
        ready = httpx.get(f"{server.url}/ready", timeout=5.0).text
    except httpx.HTTPError as error:
        ready = f"unreachable ({error})"
    log = server.log_path
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines() if log.exists() else []
    return f"/ready says {ready}; the last lines of {log}:\n    " + "\n    ".join(lines[-5:])


def _retrain_and_swap(defs, instance, registry, server, story: list[str], settings=None) -> tuple[bool, str]:
    """Step 5: one sensor tick, the retraining it requests, the gate, then the canary (or the direct swap).

    Returns whether the loop closed (the server serves the champion the rollout decided on) and the verdict
    naming the versions: what happened if it closed, what did not happen if not.
    """
    from housing_platform.devtools import loop

    tick = loop.tick_sensor(defs, instance)
    if tick.request is None:
        print(f"sensor retrain_on_drift skipped: {tick.skip_reason}")
        story.append("the sensor launched no retraining")
        held = "next retraining allowed" in (tick.skip_reason or "")
        hint = (" (an earlier retraining in this state folder holds the next one back: `make clean` starts from an "
                "empty one; the README's Retraining table says how to change the cooldown and the budget)") if held else ""
        return False, f"no retraining was launched: the sensor skipped with \"{tick.skip_reason}\"{hint}"
    print(f"sensor retrain_on_drift {_requested(tick.request)}")
    before = registry.champion()
    retraining = loop.retrain(defs, instance, tick.request, {"loggers": {"console": {"config": {"log_level": "INFO"}}}})
    print(f"retraining run {retraining.run_id}: {'SUCCESS' if retraining.success else 'FAILED'}")
    _print_checks(retraining)
    if not retraining.asset_materializations_for_node("evaluation_report"):
        story.append(f"sensor → retraining run {retraining.run_id} failed before the gate")
        return False, (f"the retraining run {retraining.run_id} failed before the gate (see its log above); "
                       f"v{before.version} stays champion")
    _print_comparison(defs, instance)
    after = registry.champion()
    held = _held_version(retraining)
    if held is not None:  # passed the gate on shifted labels: by design, only a person closes this loop
        story.append(f"sensor → retraining → gate passed → v{held} waits in 'pending_approval': {_pending_reason(registry, held)}")
        return False, (f"v{held} passed the gate but its training labels shifted, so it waits for a person "
                       f"(`housing-platform approve {held}` or `reject {held}`); v{before.version} stays champion")
    challenger = _challenger_version(retraining)
    if challenger is not None:  # the default rollout: the new version earns champion on live traffic first
        story.append(f"sensor → retraining → gate passed → v{challenger} is 'challenger' in canary beside v{before.version}")
        return demo_rollout.canary(defs, instance, registry, server, settings, before.version, challenger, story)
    if after.version == before.version:
        refused = [e.check_name for e in retraining.get_asset_check_evaluations() if not e.passed]
        story.append(f"sensor → retraining → the gate kept v{before.version} as champion")
        return False, (f"the gate refused the candidate ({', '.join(refused) or 'no failed check, yet nothing promoted'}): "
                       f"v{before.version} stays champion and the server serves {_serving(server)}")
    swapped = server.wait_for_version(after.version, timeout_seconds=SWAP_TIMEOUT_SECONDS)
    serving = _serving(server)
    story.append(
        f"sensor → retraining → gate passed → v{after.version} is champion (v{before.version} is 'previous'); "
        f"the server serves {serving}"
    )
    if not swapped:
        return False, (f"v{after.version} is champion, but the server still serves {serving} "
                       f"{SWAP_TIMEOUT_SECONDS} s later: {_server_state(server)}")
    return True, f"the server serves v{after.version}, the new champion (v{before.version} before the drift)"


def _challenger_version(result) -> str | None:
    """The version a run registered as 'challenger' (rollout shadow | canary), if it did."""
    for materialization in result.asset_materializations_for_node("registered_model_version"):
        challenger = materialization.metadata.get("challenger")
        if challenger is not None and challenger.value:
            return str(materialization.metadata["version"].value)
    return None


def _held_version(result) -> str | None:
    """The version a run registered but held for approval (label shift), if it did."""
    for materialization in result.asset_materializations_for_node("registered_model_version"):
        pending = materialization.metadata.get("pending_approval")
        if pending is not None and pending.value:
            return str(materialization.metadata["version"].value)
    return None


def _pending_reason(registry, version: str) -> str:
    from housing_platform.adapters.mlflow_registry import PENDING_REASON_TAG

    return registry.get_version(version).tags.get(PENDING_REASON_TAG, "no reason recorded")


def run_rollback_demo() -> int:
    """`housing-platform demo --scenario rollback`: a worse version promoted directly is rolled back on live labels."""
    settings = HousingSettings.from_env()
    apply_process_defaults(settings)
    os.environ["DAGSTER_HOME"] = str(settings.ensure_dagster_home())
    started = time.perf_counter()
    import dagster as dg

    from housing_platform.adapters.mlflow_registry import ModelRegistry
    from housing_platform.defs.definitions import build_definitions

    defs = build_definitions(settings)
    registry = ModelRegistry(settings.mlflow_tracking_uri, settings.mlflow_artifact_root)
    with dg.DagsterInstance.get() as instance:
        closed, story, verdict = demo_rollout.run_rollback_scenario(settings, defs, instance, registry)
    print(f"\n=== what happened ({time.perf_counter() - started:.0f} s) ===")
    for number, line in enumerate(story, start=1):
        print(f"  {number}. {line}")
    print("\nwhere to look: `housing-platform rollout show` (every alias move, who, why); Dagster asset "
          "alias_history and the sensor rollback_on_live_quality (`make dev`)")
    if not closed:
        print(f"\nthe rollback did NOT happen: {verdict}")
        return EXIT_LOOP_OPEN
    print(f"\nrolled back: {verdict}")
    return EXIT_LOOP_CLOSED


def run_demo(scenario: str = "loop") -> int:
    if scenario == "rollback":
        return run_rollback_demo()
    settings = HousingSettings.from_env()
    apply_process_defaults(settings)
    os.environ["DAGSTER_HOME"] = str(settings.ensure_dagster_home())
    started = time.perf_counter()

    import dagster as dg

    from housing_platform.adapters.mlflow_registry import ModelRegistry
    from housing_platform.defs.definitions import build_definitions
    from housing_platform.defs.monitoring.partitions import today_partition_key
    from housing_platform.devtools import loop
    from housing_platform.devtools.model_server import ModelServer
    from housing_platform.devtools.simulator import simulate

    defs = build_definitions(settings)
    registry = ModelRegistry(settings.mlflow_tracking_uri, settings.mlflow_artifact_root)
    story: list[str] = []
    with dg.DagsterInstance.get() as instance:
        # 1. Train: raw CSV → registered champion (or a gate failure that keeps the old one).
        print("\n=== 1. training: raw data → validated → split → transformer → model → gate → registry ===")
        training = loop.train(defs, instance, {"loggers": {"console": {"config": {"log_level": "INFO"}}}},
                              tags={"housing_platform/trigger": "make demo"})
        print(f"\nrun {training.run_id}: {'SUCCESS' if training.success else 'FAILED'}")
        print("per-asset step times:")
        for step, seconds in loop.step_durations(training):
            print(f"  {step:<48} {seconds:7.2f} s")
        print("asset checks:")
        _print_checks(training)
        if not training.asset_materializations_for_node("evaluation_report"):
            print("\nthe graph stopped before evaluation; see the failures above")
            return EXIT_LOOP_OPEN
        _print_comparison(defs, instance)
        champion = registry.champion()
        if champion is None:
            print("\nno champion: the gate did not pass and nothing was ever registered")
            return EXIT_LOOP_OPEN
        registered = training.asset_materializations_for_node("registered_model_version")
        story.append(
            f"trained and registered {champion.model_uri} as champion"
            if registered else f"the new model failed the gate; {champion.model_uri} stays champion"
        )
        print(f"\nchampion: {champion.model_uri}  (models:/housing_price_model@champion)")
        closed, verdict = False, "the demo stopped before the sensor's tick"

        print("\n=== 2. serving: `housing-platform serve` in the background ===")
        with ModelServer(settings, poll_interval_seconds=1.0) as server:
            print(f"server at {server.url} serving model version {server.serving_version()} (log: {server.log_path})")

            print(f"\n=== 3. stable traffic: {STABLE_ROWS:,} held-out districts with feedback ===")
            stable = simulate(server.url, "stable", STABLE_ROWS, data_path=settings.data_path, feedback=True, seed=1)
            print(stable.describe())
            monitored = loop.monitor(defs, instance, run_config=QUIET_LOGS)
            _print_checks(monitored)
            tick = loop.tick_sensor(defs, instance)
            print(f"sensor retrain_on_drift: {_requested(tick.request) if tick.request else tick.skip_reason}")
            story.append(f"stable traffic: {stable.rows_scored:,} rows scored; monitoring checks "
                         + ("passed" if all(e.passed for e in monitored.get_asset_check_evaluations()) else "failed"))

            print(f"\n=== 4. shifted traffic: {SHIFTED_ROWS:,} districts with incomes ×1.5, with feedback ===")
            shifted = simulate(server.url, "income_shift", SHIFTED_ROWS, data_path=settings.data_path,
                               feedback=True, seed=2)
            print(shifted.describe())
            monitored = loop.monitor(defs, instance, run_config=QUIET_LOGS)
            _print_checks(monitored)
            failed = [e.check_name for e in monitored.get_asset_check_evaluations() if not e.passed]
            story.append(f"shifted traffic: {shifted.rows_scored:,} rows; failed checks: {', '.join(failed) or 'none'}")

            print("\n=== 5. sensor tick → retraining → gate ===")
            closed, verdict = _retrain_and_swap(defs, instance, registry, server, story, settings)
            history = loop.draw_history(defs, instance, run_config=QUIET_LOGS)
            story.append("drift history drawn" if history.success else "drift history FAILED to draw")

        partition = today_partition_key()
        drift_html = settings.reports_dir / "drift" / f"{partition}.html"
        elapsed = time.perf_counter() - started
        print(f"\n=== what happened ({elapsed:.0f} s) ===")
        for number, line in enumerate(story, start=1):
            print(f"  {number}. {line}")
        print("\nwhere to look:")
        print(f"  drift report (HTML) {drift_html}")
        print(f"  drift history       {settings.reports_dir / 'drift_history.html'}")
        print(f"  state folder        {settings.home}")
        print("  Dagster UI          `make dev` → http://127.0.0.1:3000 (lineage, checks, runs)")
        print("  MLflow UI           `make mlflow-ui` → http://127.0.0.1:5000 (runs, registry, drift reports)")
        print("  model server        `make serve` → http://127.0.0.1:8080/docs")
        print("  rollout             `housing-platform rollout show` (champion, challenger, every alias move); "
              "Dagster assets challenger_comparison and alias_history")
        from housing_platform.adapters.mlflow_registry import PENDING_APPROVAL_ALIAS

        pending = registry.version_by_alias(PENDING_APPROVAL_ALIAS)
        if pending is not None:
            print(f"  pending approval    v{pending.version}: `housing-platform approve {pending.version}` or "
                  f"`housing-platform reject {pending.version}` ({_pending_reason(registry, pending.version)})")
    if not closed:
        print(f"\nthe loop did NOT close: {verdict}")
        return EXIT_LOOP_OPEN
    print(f"\nthe loop closed: drift → sensor → retraining → gate → canary → comparison → {verdict}")
    return EXIT_LOOP_CLOSED
