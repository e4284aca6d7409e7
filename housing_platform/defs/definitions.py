"""The single entry point of the Dagster code location: assets, checks, resources and executor.

`dagster dev` (via `workspace.yaml`), `dagster asset materialize -m housing_platform.defs.definitions`
and the tests all load `defs` from here. Resources are built from :class:`HousingSettings`, i.e.
from the environment variables documented in the README, so the same code serves the embedded
default and other profiles.
"""

from __future__ import annotations

import warnings

import dagster as dg

from housing_platform.config.environment import apply_process_defaults
from housing_platform.config.settings import HousingSettings


def build_definitions(settings: HousingSettings | None = None) -> dg.Definitions:
    settings = settings or HousingSettings.from_env()
    apply_process_defaults(settings)
    # Data versions on outputs are "beta" in Dagster 1.13 but are how staleness reaches the UI.
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    # Partitioned asset-check specs are "preview"; they are what ties a drift verdict to its day.
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)

    # Imported after the process defaults so library telemetry and caches are set up first.
    from housing_platform.defs import jobs, schedules, sensors
    from housing_platform.defs.ingestion import assets as ingestion
    from housing_platform.defs.labels import assets as labels
    from housing_platform.defs.monitoring import assets as monitoring
    from housing_platform.defs.monitoring import history as monitoring_history
    from housing_platform.defs.registry import assets as registry
    from housing_platform.defs.resources import executor_for_environment, resources_for_profile
    from housing_platform.defs.rollout import assets as rollout
    from housing_platform.defs.rollout.sensors import alias_history_job, rollback_on_live_quality
    from housing_platform.defs.serving import assets as serving
    from housing_platform.defs.serving import checks as serving_checks
    from housing_platform.defs.training import assets as training
    from housing_platform.defs.training import checks as training_checks
    from housing_platform.defs.training import golden

    # One resource set per environment (embedded or production), chosen by HOUSING_PROFILE.
    resources = resources_for_profile(settings)

    asset_modules = [ingestion, labels, training, golden, registry, serving, monitoring, monitoring_history, rollout]
    return dg.Definitions(
        # load_assets_from_modules skips plain AssetSpecs, so the live endpoint is listed explicitly.
        assets=[*dg.load_assets_from_modules(asset_modules), serving.live_endpoint_captures],
        # Checks evaluated by their asset (the data gate, drift, live quality) come with the asset's
        # check specs; the separate ones (the promotion gate, the live endpoint) are loaded from the checks modules.
        asset_checks=dg.load_asset_checks_from_modules([training_checks, serving_checks]),
        jobs=[jobs.retraining_job, jobs.monitoring_job, jobs.drift_history_job, alias_history_job],
        # The sensor follows the retraining policy of the settings these definitions are built from.
        sensors=[sensors.retraining_sensor(settings.retraining), rollback_on_live_quality],
        schedules=[schedules.hourly_monitoring, schedules.hourly_drift_history],
        resources=resources,
        # One process for the whole run: TensorFlow's import and the code location are paid once,
        # not once per step as with the multiprocess executor (dagster-io/dagster#25780).
        # HOUSING_EXECUTOR=k8s_job runs each step in a pod of its own instead (deploy/, README "Deploying").
        executor=executor_for_environment(),
    )


defs = build_definitions()
