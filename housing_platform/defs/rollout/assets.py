"""Rollout: the challenger compared with the champion on live traffic, and the history of every alias move.

`challenger_comparison` (daily partitions, group `monitoring`, so the hourly monitoring job refreshes
it) compares the version aliased `challenger` with the champion on the traffic captured since it became
challenger, on trusted labels only: paired bootstrap in shadow mode, two-sample in canary mode, per-slice
non-regression, error rate (rows a version failed to answer, `scoring_failures`) and p99 latency
(`core/rollout.py`). Its check decides promote / wait / reject and the asset moves the aliases accordingly
(`adapters/alias_moves.py`), recording who (this run), why and the evidence.
`alias_history` shows at a glance what is champion, challenger and previous, the rollout, and every move.
"""


from datetime import UTC, datetime

import dagster as dg

from housing_platform.adapters.alias_moves import (
    CHALLENGER_ALIAS,
    CHALLENGER_SINCE_TAG,
    alias_history,
    promote_challenger,
    reject_challenger,
    rollout_of,
)
from housing_platform.adapters.mlflow_registry import PREVIOUS_ALIAS
from housing_platform.core.rollout import PROMOTE, REJECT, SHADOW, compare_paired, compare_two_sample, rollout_decision
from housing_platform.defs.code_versions import asset_code_version
from housing_platform.defs.metadata import COUNT, SHARE, number_metadata, numbers_metadata
from housing_platform.defs.monitoring.partitions import daily_partitions, day_window
from housing_platform.defs.resources import CaptureStoreResource, MLflowResource
from housing_platform.defs.rollout import evidence
from housing_platform.defs.rollout.checks import (
    DECISION_CHECK,
    decision_check_result,
    decision_check_spec,
    no_challenger_check_result,
)
from housing_platform.defs.rollout.config import ChallengerComparisonConfig

OWNERS = ["team:ml-platform"]


def rollout_glance(registry) -> dict:
    """Champion, challenger, previous and the rollout, as metadata a person reads at a glance."""
    champion, challenger = registry.champion(), registry.version_by_alias(CHALLENGER_ALIAS)
    previous = registry.version_by_alias(PREVIOUS_ALIAS)
    mode, share = rollout_of(challenger) if challenger is not None else ("none", None)
    return {
        "champion": champion.version if champion else "none",
        "challenger": challenger.version if challenger else "none",
        "previous": previous.version if previous else "none",
        "rollout": mode,
        **number_metadata("rollout_share", share, SHARE),  # n/a without a challenger
    }


@dg.asset(
    group_name="monitoring",
    kinds={"pandas", "mlflow"},
    owners=OWNERS,
    code_version=asset_code_version("challenger_comparison", ChallengerComparisonConfig),
    partitions_def=daily_partitions,
    tags={"stage": "rollout"},
    deps=["live_endpoint_captures"],
    check_specs=[decision_check_spec],
)
def challenger_comparison(context: dg.AssetExecutionContext, config: ChallengerComparisonConfig,
                          capture_store: CaptureStoreResource, mlflow_tracking: MLflowResource):
    """The challenger against the champion on live traffic with trusted labels, and the decision.

    Rows: those captured from when the version became `challenger` to the end of this partition's day.
    Shadow: the champion answered and the challenger scored the same rows (paired bootstrap of the relative
    RMSE difference); canary: each answered its own rows (two-sample bootstrap). Per-slice RMSE by
    `ocean_proximity` and income quintile, p99 latency per version, prediction divergence (shadow).
    Promote when the interval's upper bound is under the non-inferiority margin and no slice regresses;
    reject when its lower bound is over it, a slice regresses, its error rate (rows it failed to answer, from
    the servers' `scoring_failures`) or latency is out of bounds, or the wait cap
    passed; otherwise wait, saying how many more labelled rows a power calculation asks for.
    """
    registry = mlflow_tracking.registry()
    champion, challenger = registry.champion(), registry.version_by_alias(CHALLENGER_ALIAS)
    if champion is None or challenger is None:
        yield dg.Output({"outcome": "no challenger"}, metadata={**rollout_glance(registry), "outcome": "no challenger"})
        yield no_challenger_check_result()
        return
    limits = config.to_rollout_config()
    mode, share = rollout_of(challenger)
    since = datetime.fromisoformat(challenger.tags.get(CHALLENGER_SINCE_TAG) or datetime.now(UTC).isoformat())
    _, end = day_window(context.partition_key)
    store = capture_store.store()
    try:
        traffic = evidence.read_traffic(store, since, end, config.trusted_labels_only)
    finally:
        store.dispose()
    frame = traffic.frame
    if mode == SHADOW:
        comparison = compare_paired(evidence.paired_rows(frame, champion.version, challenger.version), limits)
    else:
        comparison = compare_two_sample(evidence.model_rows(frame, champion.version),
                                        evidence.model_rows(frame, challenger.version), limits)
    waited_days = (datetime.now(UTC) - since).total_seconds() / 86_400
    decision = rollout_decision(comparison, evidence.operations(frame, champion.version, traffic.failures),
                                evidence.operations(frame, challenger.version, traffic.failures), waited_days, limits)
    by = f"dagster run {context.run.run_id} ({DECISION_CHECK})"
    context.log.info(f"challenger {challenger.version} vs champion {champion.version} ({mode}): "
                     f"{decision.outcome}: {decision.reason}")
    moved = False
    if config.act and decision.outcome == PROMOTE:
        promote_challenger(registry, by, decision.reason, decision.evidence())
        moved = True
    elif config.act and decision.outcome == REJECT:
        reject_challenger(registry, by, decision.reason, decision.evidence())
        moved = True
    value = {"champion": champion.version, "challenger": challenger.version, "rollout": mode, "share": share,
             **decision.evidence(), "moved": moved}
    yield dg.Output(value, metadata={
        **rollout_glance(registry),
        "compared_champion": champion.version,
        "compared_challenger": challenger.version,
        "compared_rollout": mode,
        "outcome": decision.outcome,
        "aliases_moved": moved,
        **numbers_metadata({"untrusted_labels_left_out": (traffic.untrusted_labels, COUNT),
                            "captured_rows": (len(frame), COUNT)}),
    })
    yield decision_check_result(decision, champion.version, challenger.version, mode, moved)


@dg.asset(
    name="alias_history",
    group_name="registry",
    kinds={"mlflow"},
    owners=OWNERS,
    code_version=asset_code_version("alias_history"),
    tags={"stage": "rollout"},
    deps=["registered_model_version"],  # refreshed by every retraining, after the gate moved (or not) an alias
)
def alias_history_asset(context: dg.AssetExecutionContext, mlflow_tracking: MLflowResource) -> dg.Output[list]:
    """Every alias move of `housing_price_model` — challenge, rollout change, promote, reject, rollback — with
    who moved it (a Dagster run, a sensor, a CLI user), why and the evidence, read from the versions' MLflow
    tags (`alias_event_*`), and what is champion, challenger and previous now, with the rollout."""
    registry = mlflow_tracking.registry()
    events = alias_history(registry)
    rows = "\n".join(f"| {e.at[:19]} | {e.action} | {e.alias} | {e.replaced or ''} → {e.version} | {e.by} | "
                     f"{e.reason[:160].replace('|', '/')} |" for e in reversed(events[-50:]))
    table = "| at (UTC) | action | alias | move | by | why |\n|---|---|---|---|---|---|\n" + rows
    return dg.Output([e.__dict__ for e in events], metadata={
        **rollout_glance(registry),
        **number_metadata("moves", len(events), COUNT),
        "last_move": events[-1].describe() if events else "none",
        "history": dg.MetadataValue.md(table if events else "no alias move recorded"),
    })
