"""`housing-platform approve|reject VERSION`: a person decides on a version held for approval.

A version whose training labels shifted since the champion's (`core/label_shift.py`) passes the gate,
is registered, and waits under the MLflow alias ``pending_approval`` with the reason in its tags;
nothing promotes it automatically. ``approve`` makes it champion through the same path as an automatic
promotion: it must carry the pipeline's ``fast_path_verified=true`` verdict, it is loaded exactly as the
model server loads it (`load_fast_scorer`: the recorded sha256 of every file, then the fast path against
the pyfunc on the probe rows) and only then does `ModelRegistry.promote` move ``champion`` (the old one
becomes ``previous``) and the version's fallback baseline become the server's (`scoring/fallback.py`). ``reject`` removes the pending alias and leaves ``champion`` where it is. Either
way the decision is recorded on the version: ``approval_status``, ``decided_by`` (``--by``, default
``$USER``), ``decided_at`` (UTC) and ``decision_reason``.

Exit codes: 0 decided; 1 refused (the version is not pending, or it failed verification); 2 the
registry or the version cannot be found.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from housing_platform.cli.decisions import decided_by

EXIT_DECIDED = 0
EXIT_REFUSED = 1
EXIT_NOT_FOUND = 2
DECIDED_BY_TAG = "decided_by"
DECIDED_AT_TAG = "decided_at"
DECISION_REASON_TAG = "decision_reason"


def _pending(args: argparse.Namespace):
    """(registry, version) when ``args.version`` holds ``pending_approval``; otherwise an exit code."""
    from housing_platform.adapters.mlflow_registry import (
        APPROVAL_STATUS_TAG,
        PENDING_APPROVAL_ALIAS,
        MissingTrackingDatabase,
        ModelRegistry,
    )
    from housing_platform.config.environment import apply_process_defaults
    from housing_platform.config.runtime import process_settings

    settings = process_settings()
    apply_process_defaults(settings)
    try:
        registry = ModelRegistry(settings.mlflow_tracking_uri, settings.mlflow_artifact_root, must_exist=True)
    except MissingTrackingDatabase as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_NOT_FOUND
    from mlflow.exceptions import MlflowException

    try:
        version = registry.get_version(args.version)
        aliases = registry.aliases_of(args.version)
    except MlflowException:
        print(f"error: {registry.model_name} has no version {args.version!r} in {settings.mlflow_tracking_uri}",
              file=sys.stderr)
        return EXIT_NOT_FOUND
    if PENDING_APPROVAL_ALIAS not in aliases:
        status = version.tags.get(APPROVAL_STATUS_TAG, "never held")
        print(f"error: version {args.version} is not waiting for approval (aliases: {', '.join(aliases) or 'none'}; "
              f"{APPROVAL_STATUS_TAG}: {status}); nothing changed", file=sys.stderr)
        return EXIT_REFUSED
    return registry, version


def _record(registry, version: str, status: str, args: argparse.Namespace) -> str:
    from housing_platform.adapters.mlflow_registry import APPROVAL_STATUS_TAG, PENDING_APPROVAL_ALIAS

    person = decided_by(args)
    registry.set_tags(version, {
        APPROVAL_STATUS_TAG: status, DECIDED_BY_TAG: person, DECIDED_AT_TAG: datetime.now(UTC).isoformat(),
        DECISION_REASON_TAG: args.reason or "(none given)",
    })
    registry.remove_alias(PENDING_APPROVAL_ALIAS)
    return person


def command_approve(args: argparse.Namespace) -> int:
    from housing_platform.adapters.fallback_store import store_fallback_baseline
    from housing_platform.adapters.file_store import file_store_for
    from housing_platform.adapters.mlflow_registry import FAST_PATH_VERIFIED_TAG, PENDING_REASON_TAG
    from housing_platform.config.runtime import process_settings
    from housing_platform.scoring.errors import ScoringError
    from housing_platform.scoring.verification import load_fast_scorer

    found = _pending(args)
    if isinstance(found, int):
        return found
    registry, version = found
    if version.tags.get(FAST_PATH_VERIFIED_TAG) != "true":
        print(f"error: version {version.version} is not tagged {FAST_PATH_VERIFIED_TAG}=true; it cannot become "
              "champion", file=sys.stderr)
        return EXIT_REFUSED
    try:  # the server's loader: file hashes, then the fast path against the pyfunc on the probe rows
        load_fast_scorer(version.model_uri)
    except ScoringError as error:
        print(f"error: version {version.version} fails verification, champion not moved: {error}", file=sys.stderr)
        return EXIT_REFUSED
    previous = registry.promote(version.version)
    # As at an automatic promotion: the new champion's baseline is what the server falls back to.
    baseline = registry.fallback_baseline(version.version)
    if baseline is not None:
        store_fallback_baseline(file_store_for(process_settings()),
                                {**baseline, "model_version": version.version})
    person = _record(registry, version.version, "approved", args)
    from housing_platform.adapters.alias_moves import record_direct_promotion

    record_direct_promotion(registry, version.version, previous.version if previous else None, f"cli {person}",
                            args.reason or "approved after a label shift")
    print(f"version {version.version} approved by {person}: it is champion"
          + (f" (v{previous.version} is previous)" if previous else "")
          + f". It was held because: {version.tags.get(PENDING_REASON_TAG, 'no reason recorded')}")
    return EXIT_DECIDED


def command_reject(args: argparse.Namespace) -> int:
    found = _pending(args)
    if isinstance(found, int):
        return found
    registry, version = found
    person = _record(registry, version.version, "rejected", args)
    from housing_platform.adapters.alias_moves import REJECT, record_move
    from housing_platform.adapters.mlflow_registry import PENDING_APPROVAL_ALIAS

    record_move(registry, REJECT, PENDING_APPROVAL_ALIAS, version.version, version.version, f"cli {person}",
                args.reason or "rejected after a label shift")
    champion = registry.champion()
    print(f"version {version.version} rejected by {person}; champion stays "
          + (f"v{champion.version}" if champion else "unset"))
    return EXIT_DECIDED


def add_parser(commands) -> None:
    """Register `approve` and `reject` on the `housing-platform` sub-command parser ``commands``."""
    for name, handler, verb in (("approve", command_approve, "promote to champion"),
                                ("reject", command_reject, "discard")):
        command = commands.add_parser(
            name,
            help=f"{verb} a version waiting in 'pending_approval' (held because its training labels shifted)",
            description=f"{verb.capitalize()} a version held under the alias pending_approval; the decision is "
            "recorded on the version (approval_status, decided_by, decided_at, decision_reason). "
            "Exit 0: decided; 1: refused (not pending, or fails verification); 2: no such registry or version.",
        )
        command.add_argument("version", help="the registered version number")
        command.add_argument("--reason", default=None, help="why (recorded on the version)")
        command.add_argument("--by", default=None, help="who decides (default: $USER)")
        command.set_defaults(handler=handler)
