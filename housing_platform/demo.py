"""`make demo`: materialize the whole graph into the state folder and say what was produced where.

The run is recorded in the persistent Dagster instance (``$HOUSING_HOME/dagster``), so it is there to
browse afterwards with `make dev`.
"""

from __future__ import annotations

import os
import time

from housing_platform.settings import HousingSettings, apply_process_defaults


def _step_durations(result) -> list[tuple[str, float]]:
    durations = []
    for event in result.all_events:
        if event.event_type_value == "STEP_SUCCESS":
            durations.append((event.step_key, event.event_specific_data.duration_ms / 1000))
    return durations


def run_demo() -> int:
    settings = HousingSettings.from_env()
    apply_process_defaults(settings)
    os.environ["DAGSTER_HOME"] = str(settings.ensure_dagster_home())

    started = time.perf_counter()
    import dagster as dg

    from housing_platform.definitions import build_definitions

    defs = build_definitions(settings)
    with dg.DagsterInstance.get() as instance:
        result = dg.materialize(
            [*(defs.assets or []), *(defs.asset_checks or [])],
            instance=instance,
            resources=defs.resources,
            selection=dg.AssetSelection.groups("ingestion", "training", "registry"),
            raise_on_error=False,
            # Progress at INFO (epochs, row counts); Dagster's DEBUG event stream stays in the UI.
            run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
            tags={"housing_platform/trigger": "make demo"},
        )
        elapsed = time.perf_counter() - started

        print("\n=== housing_platform demo ===")
        print(f"run {result.run_id}: {'SUCCESS' if result.success else 'FAILED'} in {elapsed:.1f} s (including imports)")
        print("\nper-asset step times:")
        for step, seconds in _step_durations(result):
            print(f"  {step:<32} {seconds:7.2f} s")
        print("\nasset checks:")
        for evaluation in result.get_asset_check_evaluations():
            status = "PASS" if evaluation.passed else "FAIL"
            print(f"  {status}  {evaluation.asset_key.to_user_string()} · {evaluation.check_name}: {evaluation.description}")
        print("\nwhere to look:")
        print(f"  state folder        {settings.home}")
        print(f"  asset values        {settings.storage_dir}")
        print(f"  quarantined rows    {settings.quarantine_dir}")
        print(f"  Dagster instance    {settings.dagster_home}  (browse with `make dev`, http://127.0.0.1:3000)")
    return 0 if result.success else 1
