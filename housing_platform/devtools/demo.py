"""`make demo`: the whole loop on the embedded default, then a short story of what happened.

train → start the server in the background → stable traffic → monitor → shifted traffic with
feedback → monitor (the checks fail) → sensor tick → retraining run → the gate decides → the server
swaps if promoted. Everything is recorded in the persistent instance and state folder
(``$HOUSING_HOME``), so it is all there to browse afterwards with `make dev` and `make mlflow-ui`.
"""

from __future__ import annotations

import json
import os
import time

from housing_platform.config.environment import apply_process_defaults
from housing_platform.config.settings import HousingSettings

STABLE_ROWS = 1_000
SHIFTED_ROWS = 1_500
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _print_checks(result, prefix: str = "  ") -> None:
    for evaluation in result.get_asset_check_evaluations():
        status = "PASS" if evaluation.passed else "FAIL"
        print(f"{prefix}{status}  {evaluation.asset_key.to_user_string()} · {evaluation.check_name}: {evaluation.description}")


def _print_comparison(defs, instance) -> None:
    from housing_platform.defs.training.assets import comparison_table

    report = defs.load_asset_value("evaluation_report", instance=instance)
    table = comparison_table(report["metrics"], report["baselines"], report.get("champion"))
    print(f"\ntest split ({report['test_rows']:,} rows): candidate vs. baselines vs. current champion")
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.3f}"))


def run_demo() -> int:
    settings = HousingSettings.from_env()
    apply_process_defaults(settings)
    os.environ["DAGSTER_HOME"] = str(settings.ensure_dagster_home())
    started = time.perf_counter()

    import dagster as dg

    from housing_platform.adapters.mlflow_registry import ModelRegistry
    from housing_platform.defs import sensors
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
            return 1
        _print_comparison(defs, instance)
        champion = registry.champion()
        if champion is None:
            print("\nno champion: the gate did not pass and nothing was ever registered")
            return 1
        registered = training.asset_materializations_for_node("registered_model_version")
        story.append(
            f"trained and registered {champion.model_uri} as champion"
            if registered else f"the new model failed the gate; {champion.model_uri} stays champion"
        )
        print(f"\nchampion: {champion.model_uri}  (models:/housing_price_model@champion)")

        # The sensor only reacts to check failures from now on, not to earlier demos' history.
        _, cursor_state = sensors.new_check_failures(instance, {})
        cursor = json.dumps(cursor_state)

        print("\n=== 2. serving: `housing-platform serve` in the background ===")
        with ModelServer(settings, poll_interval_seconds=1.0) as server:
            print(f"server at {server.url} serving model version {server.serving_version()} (log: {server.log_path})")

            print(f"\n=== 3. stable traffic: {STABLE_ROWS:,} held-out districts with feedback ===")
            stable = simulate(server.url, "stable", STABLE_ROWS, data_path=settings.data_path, feedback=True, seed=1)
            print(stable.describe())
            monitored = loop.monitor(defs, instance, run_config=QUIET_LOGS)
            _print_checks(monitored)
            tick = loop.tick_sensor(defs, instance, cursor)
            print(f"sensor retrain_on_drift: {'requested a run' if tick.request else tick.skip_reason}")
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
            tick = loop.tick_sensor(defs, instance, tick.cursor)
            if tick.request is None:
                print(f"sensor retrain_on_drift: {tick.skip_reason}")
                story.append("the sensor requested nothing")
            else:
                print(f"sensor retrain_on_drift requested a run, triggered by {tick.request.tags['housing_platform/trigger_check']}")
                before = registry.champion()
                retraining = loop.retrain(defs, instance, tick.request, {"loggers": {"console": {"config": {"log_level": "INFO"}}}})
                print(f"retraining run {retraining.run_id}: {'SUCCESS' if retraining.success else 'stopped at the gate'}")
                _print_checks(retraining)
                _print_comparison(defs, instance)
                after = registry.champion()
                if after.version != before.version:
                    swapped = server.wait_for_version(after.version, timeout_seconds=60)
                    story.append(
                        f"sensor → retraining → gate passed → v{after.version} is champion (v{before.version} is 'previous'); "
                        f"the server {'swapped to it' if swapped else 'has NOT swapped yet'}"
                    )
                else:
                    story.append(f"sensor → retraining → the gate kept v{before.version} as champion")

        partition = today_partition_key()
        drift_html = settings.reports_dir / "drift" / f"{partition}.html"
        elapsed = time.perf_counter() - started
        print(f"\n=== what happened ({elapsed:.0f} s) ===")
        for number, line in enumerate(story, start=1):
            print(f"  {number}. {line}")
        print("\nwhere to look:")
        print(f"  drift report (HTML) {drift_html}")
        print(f"  state folder        {settings.home}")
        print("  Dagster UI          `make dev` → http://127.0.0.1:3000 (lineage, checks, runs)")
        print("  MLflow UI           `make mlflow-ui` → http://127.0.0.1:5000 (runs, registry, drift reports)")
        print("  model server        `make serve` → http://127.0.0.1:8080/docs")
    return 0
