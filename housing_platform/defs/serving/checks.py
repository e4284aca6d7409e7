"""Served = promoted: the version in the live endpoint's recent captures against the `champion` alias.

The endpoint is a process Dagster does not run, so the evidence is what it wrote: every scored row is
captured with the version that scored it. :func:`served_versions_verdict` reads the captures of the
last `recent_minutes` (older traffic says nothing about now) and fails when one came from another
version than the champion although it was made

* at least `settle_seconds` after the alias moved (MLflow keeps no time for an alias move: the time is
  the `promoted_at` tag `ModelRegistry.promote` writes; a move made by hand counts from the window's
  start), the time a server takes to see the move and load the version, and
* after the endpoint's first capture from the champion, if there is one (captures of the old version
  *before* it are the swap itself; after it, a replica or a refused load still serves the old one).

So a server that refused the champion (`/ready` says why, `housing_model_refused_loads_total` counts it)
fails the check, naming both versions; an idle endpoint passes, saying there is nothing to compare.
The check is not blocking: nothing downstream is materialized in the same run.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd

from housing_platform.defs.metadata import COUNT, numbers_metadata
from housing_platform.defs.resources import CaptureStoreResource, MLflowResource
from housing_platform.defs.serving.assets import live_endpoint_captures
from housing_platform.defs.serving.config import EndpointCheckConfig

ENDPOINT_CHECK = "endpoint_serves_champion"


def endpoint_check_description(defaults: EndpointCheckConfig | None = None) -> str:
    defaults = defaults or EndpointCheckConfig()
    return (
        "Compares the model version of the live endpoint's captures with the `champion` alias. Fails, naming both "
        f"versions, when a capture of the last {defaults.recent_minutes:g} minutes (`recent_minutes`) came from "
        f"another version although it was made more than {defaults.settle_seconds:g} s (`settle_seconds`) after "
        "`champion` moved and after the endpoint's first capture from the champion: the server refused the champion "
        "(see its `/ready`) or a replica still serves the old one. Passes, saying why, when there are no recent "
        "captures or no champion."
    )


@dataclass(frozen=True)
class EndpointVerdict:
    passed: bool
    description: str
    offending_rows: int = 0


def _when(value) -> str:
    return pd.Timestamp(value).isoformat(timespec="seconds")


def served_versions_verdict(
    captures: pd.DataFrame, champion: str, promoted_at: datetime | None, now: datetime, config: EndpointCheckConfig
) -> EndpointVerdict:
    """The verdict on ``captures`` (``captured_at``, ``model_version``) for ``champion`` (see the module docstring)."""
    window_start = now - timedelta(minutes=config.recent_minutes)
    recent = captures[captures["captured_at"] >= window_start]
    if recent.empty:
        return EndpointVerdict(True, f"No captures since {_when(window_start)} (the last {config.recent_minutes:g} "
                                     f"minutes): nothing shows which version the endpoint serves; `champion` is "
                                     f"version {champion}.")
    settled_from = window_start
    if promoted_at is not None:
        settled_from = max(window_start, promoted_at + timedelta(seconds=config.settle_seconds))
    from_champion = recent[recent["model_version"] == champion]
    offending = recent[(recent["model_version"] != champion) & (recent["captured_at"] >= settled_from)]
    if not from_champion.empty:
        offending = offending[offending["captured_at"] > from_champion["captured_at"].min()]
    since = f" (since {_when(promoted_at)})" if promoted_at is not None else ""
    if not offending.empty:
        served = ", ".join(
            f"version {version} ({len(rows):,} captures, the latest at {_when(rows['captured_at'].max())})"
            for version, rows in offending.groupby("model_version", sort=True)
        )
        return EndpointVerdict(
            False,
            f"The live endpoint served {served} while `champion` is version {champion}{since}; "
            f"{len(from_champion):,} of the {len(recent):,} captures since {_when(window_start)} came from the "
            "champion. The server's `/ready` says why (`mismatch_reason`).",
            len(offending),
        )
    if from_champion.empty:
        return EndpointVerdict(True, f"The {len(recent):,} recent captures all predate {_when(settled_from)}, when "
                                     f"the endpoint should serve `champion` version {champion}{since}: too early "
                                     "to tell.")
    return EndpointVerdict(True, f"Every capture since the endpoint's first from `champion` version {champion} "
                                 f"({_when(from_champion['captured_at'].min())}) came from it: "
                                 f"{len(from_champion):,} of the {len(recent):,} captures since {_when(window_start)}.")


def _versions_table(captures: pd.DataFrame) -> dg.MetadataValue:
    rows = [
        f"| {version} | {len(group):,} | {_when(group['captured_at'].min())} | {_when(group['captured_at'].max())} |"
        for version, group in captures.groupby("model_version", sort=True)
    ]
    return dg.MetadataValue.md("\n".join(["| version | captures | first | last |", "|---|---|---|---|", *rows]))


@dg.asset_check(asset=live_endpoint_captures.key, name=ENDPOINT_CHECK, description=endpoint_check_description())
def endpoint_serves_champion(
    config: EndpointCheckConfig, capture_store: CaptureStoreResource, mlflow_tracking: MLflowResource
) -> dg.AssetCheckResult:
    registry = mlflow_tracking.registry()
    champion = registry.champion()
    if champion is None:
        return dg.AssetCheckResult(passed=True, description="No `champion` alias yet: nothing to compare the "
                                                            "endpoint's captures with.")
    promoted_at = registry.promoted_at(champion)
    now = datetime.now(UTC)
    window_start = now - timedelta(minutes=config.recent_minutes)
    store = capture_store.store()
    try:
        captures = store.read_captures(start=window_start)[["captured_at", "model_version"]]
    finally:
        store.dispose()
    from housing_platform.adapters.alias_moves import CHALLENGER_ALIAS

    challenger = registry.version_by_alias(CHALLENGER_ALIAS)  # a canary's rows are the challenger's by design
    if challenger is not None and challenger.version != champion.version:
        captures = captures[captures["model_version"] != challenger.version]
    verdict = served_versions_verdict(captures, champion.version, promoted_at, now, config)
    latest = captures.iloc[-1] if len(captures) else None
    return dg.AssetCheckResult(
        passed=verdict.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=verdict.description,
        metadata={
            "champion_version": champion.version,
            "champion_since": _when(promoted_at) if promoted_at is not None else "unknown (alias moved by hand)",
            "window_start": _when(window_start),
            **numbers_metadata({"recent_captures": (len(captures), COUNT),
                                "captures_from_other_versions_after_settling": (verdict.offending_rows, COUNT)}),
            "latest_capture_version": str(latest["model_version"]) if latest is not None else "none",
            "latest_capture_at": _when(latest["captured_at"]) if latest is not None else "none",
            "versions_seen": _versions_table(captures),
        },
    )
