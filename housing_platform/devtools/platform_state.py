"""A small but complete platform state for the UI: trained, served, monitored — what the tour shows.

The browser tests and ``scripts/screenshots.py`` (``make screenshots``) both build it the same way:
:func:`build_platform_state` trains a small model through the real asset graph (the gate decides),
serves shifted traffic with feedback through the real server, and monitors today, all inside a
state folder of its own (:func:`platform_environment`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from housing_platform.config.settings import HousingSettings
from housing_platform.devtools.loop import QUIET_LOGS, SMALL_TRAINING

# Shifted incomes: the drift check fails while the evaluation gate passed, so the pages show both.
TRAFFIC_SCENARIO = "income_shift"
TRAFFIC_ROWS = 600
# Variables that would point the state somewhere else than the temporary folder.
FOREIGN_STATE_VARIABLES = (
    "MLFLOW_TRACKING_URI", "HOUSING_CAPTURE_URL", "HOUSING_DATA_PATH", "HOUSING_MLFLOW_ARTIFACT_ROOT",
    "HOUSING_HOME", "DAGSTER_HOME",
)


@contextmanager
def platform_environment(home: Path) -> Iterator[HousingSettings]:
    """Point HOUSING_HOME and DAGSTER_HOME at ``home`` while the block runs; restore the environment after."""
    saved = dict(os.environ)
    try:
        for name in FOREIGN_STATE_VARIABLES:
            os.environ.pop(name, None)
        os.environ["HOUSING_HOME"] = str(home)
        settings = HousingSettings.from_env()
        os.environ["DAGSTER_HOME"] = str(settings.ensure_dagster_home())
        yield settings
    finally:
        os.environ.clear()
        os.environ.update(saved)


@dataclass
class PlatformState:
    """What :func:`build_platform_state` produced, hence what the pages must show."""

    settings: HousingSettings
    partition_key: str
    asset_keys: list[str]
    group_names: list[str]
    checks: dict[str, dict[str, bool]]  # asset key → {check name: passed} for every check evaluated
    evaluation_rmse: float
    drift_table: list[dict]  # the drift_report value: column, method, score, threshold, drifted
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def dagster_home(self) -> Path:
        return self.settings.dagster_home

    @property
    def drift_html(self) -> Path:
        return self.settings.reports_dir / "drift" / f"{self.partition_key}.html"

    @property
    def drift_history_html(self) -> Path:
        return self.settings.reports_dir / "drift_history.html"


def build_platform_state(settings: HousingSettings, traffic_rows: int = TRAFFIC_ROWS) -> PlatformState:
    """Train (3 epochs) and register, serve shifted traffic with feedback, and monitor today.

    Call it inside :func:`platform_environment`. Raises when training does not register a champion,
    since nothing after it would mean anything.
    """
    import dagster as dg

    from housing_platform.defs.definitions import build_definitions
    from housing_platform.defs.monitoring.partitions import today_partition_key
    from housing_platform.devtools import loop
    from housing_platform.devtools.model_server import ModelServer
    from housing_platform.devtools.simulator import simulate

    seconds: dict[str, float] = {}
    started = time.perf_counter()
    defs = build_definitions(settings)
    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        training = loop.train(defs, instance, SMALL_TRAINING, tags={"housing_platform/trigger": "browser tests"})
        if not training.success:
            failed = [name for name, e in loop.check_results(training).items() if not e.passed]
            raise RuntimeError(f"training did not register a model (failed checks: {failed or 'none'})")
        seconds["train"] = time.perf_counter() - started

        mark = time.perf_counter()
        with ModelServer(settings, poll_interval_seconds=5.0) as server:
            traffic = simulate(server.url, TRAFFIC_SCENARIO, traffic_rows, data_path=settings.data_path,
                               feedback=True, seed=1)
        if traffic.failed_requests:
            raise RuntimeError(f"traffic to the model server failed: {traffic.errors[:3]}")
        seconds["serve"] = time.perf_counter() - mark

        mark = time.perf_counter()
        partition_key = today_partition_key()
        monitored = loop.monitor(defs, instance, partition_key, run_config=QUIET_LOGS)
        loop.draw_history(defs, instance, run_config=QUIET_LOGS)
        seconds["monitor"] = time.perf_counter() - mark

        checks: dict[str, dict[str, bool]] = {}
        for result in (training, monitored):
            for evaluation in result.get_asset_check_evaluations():
                checks.setdefault(evaluation.asset_key.to_user_string(), {})[evaluation.check_name] = evaluation.passed
        graph = defs.resolve_asset_graph()
        keys = sorted(key.to_user_string() for key in graph.get_all_asset_keys())
        groups = sorted({graph.get(key).group_name for key in graph.get_all_asset_keys()})
        report = defs.load_asset_value("evaluation_report", instance=instance)
        drift_table = defs.load_asset_value("drift_report", partition_key=partition_key, instance=instance)
    return PlatformState(
        settings=settings,
        partition_key=partition_key,
        asset_keys=keys,
        group_names=groups,
        checks=checks,
        evaluation_rmse=float(report["metrics"]["rmse"]),
        drift_table=drift_table.to_dict("records"),
        seconds=seconds,
    )




def existing_platform_state(settings: HousingSettings, partition_key: str | None = None) -> PlatformState:
    """A :class:`PlatformState` describing a state folder built elsewhere (e.g. by `make demo`), unchanged.

    Used to screenshot the analyst's pages on a state whose loop closed (drift → retraining → new
    champion), which :func:`build_platform_state` does not go through. Check results and the drift
    table are not read back: pages that need them are not taken from such a state.
    """
    from housing_platform.defs.definitions import build_definitions
    from housing_platform.defs.monitoring.partitions import today_partition_key

    graph = build_definitions(settings).resolve_asset_graph()
    keys = sorted(key.to_user_string() for key in graph.get_all_asset_keys())
    groups = sorted({graph.get(key).group_name for key in graph.get_all_asset_keys()})
    return PlatformState(settings=settings, partition_key=partition_key or today_partition_key(), asset_keys=keys,
                         group_names=groups, checks={}, evaluation_rmse=float("nan"), drift_table=[])
