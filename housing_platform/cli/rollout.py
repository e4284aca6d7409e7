"""`housing-platform rollout set|show` and `housing-platform rollback`: a person steers a safe rollout.

``rollout set --share 0.25 [--mode canary|shadow]`` changes the tags of the version aliased ``challenger``;
every model server follows them at its next poll. ``rollout show`` prints champion, challenger, previous,
the rollout and the last alias moves. ``rollback [--to VERSION]`` moves ``champion`` back to ``previous``
(or to VERSION) at once; the rolled-back version is tagged with the reason and the version rolled back to
becomes the server's fallback baseline again. Every move is recorded on the versions as an alias event
naming the person (``--by``, default ``$USER``; see ``cli/decisions.py``).

Exit codes: 0 done; 1 refused (no challenger, nothing to roll back to, a share or mode breaking its rule);
2 the registry or the version cannot be found.
"""

from __future__ import annotations

import argparse
import sys

from housing_platform.cli.decisions import decided_by

EXIT_DONE, EXIT_REFUSED, EXIT_NOT_FOUND = 0, 1, 2


def _registry():
    from housing_platform.adapters.mlflow_registry import MissingTrackingDatabase, ModelRegistry
    from housing_platform.config.environment import apply_process_defaults
    from housing_platform.config.runtime import process_settings

    settings = process_settings()
    apply_process_defaults(settings)
    try:
        return ModelRegistry(settings.mlflow_tracking_uri, settings.mlflow_artifact_root, must_exist=True), settings
    except MissingTrackingDatabase as error:
        print(f"error: {error}", file=sys.stderr)
        return None, settings


def command_set(args: argparse.Namespace) -> int:
    from housing_platform.adapters.alias_moves import set_rollout

    registry, _ = _registry()
    if registry is None:
        return EXIT_NOT_FOUND
    if args.share is None and args.mode is None:
        print("error: give --share and/or --mode", file=sys.stderr)
        return EXIT_REFUSED
    try:
        event = set_rollout(registry, f"cli {decided_by(args)}", share=args.share, mode=args.mode)
    except (LookupError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"challenger {event.version}: {event.reason} (by {event.by}); servers follow at their next poll")
    return EXIT_DONE


def command_show(args: argparse.Namespace) -> int:
    from housing_platform.adapters.alias_moves import CHALLENGER_ALIAS, alias_history, rollout_of
    from housing_platform.adapters.mlflow_registry import PREVIOUS_ALIAS

    registry, _ = _registry()
    if registry is None:
        return EXIT_NOT_FOUND
    champion, previous = registry.champion(), registry.version_by_alias(PREVIOUS_ALIAS)
    challenger = registry.version_by_alias(CHALLENGER_ALIAS)
    print(f"champion: {champion.version if champion else 'none'}   previous: {previous.version if previous else 'none'}")
    if challenger is None:
        print("challenger: none")
    else:
        mode, share = rollout_of(challenger)
        print(f"challenger: {challenger.version} ({mode}{f', share {share:g}' if mode == 'canary' else ''})")
    for event in alias_history(registry)[-args.last:]:
        print("  " + event.describe())
    return EXIT_DONE


def command_rollback(args: argparse.Namespace) -> int:
    from mlflow.exceptions import MlflowException

    from housing_platform.adapters.alias_moves import roll_back
    from housing_platform.adapters.fallback_store import store_fallback_baseline
    from housing_platform.adapters.file_store import file_store_for

    registry, settings = _registry()
    if registry is None:
        return EXIT_NOT_FOUND
    reason = args.reason or "rolled back by hand"
    try:
        event = roll_back(registry, f"cli {decided_by(args)}", reason, to=args.to)
    except MlflowException:
        print(f"error: {registry.model_name} has no version {args.to!r}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except (LookupError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_REFUSED
    baseline = registry.fallback_baseline(event.version)
    if baseline is not None:
        store_fallback_baseline(file_store_for(settings), {**baseline, "model_version": event.version})
    print(f"champion {event.replaced or 'none'} -> {event.version} by {event.by}: {reason}; "
          "servers follow at their next poll")
    return EXIT_DONE


def add_parser(commands) -> None:
    """Register `rollout set|show` and `rollback` on the `housing-platform` sub-command parser ``commands``."""
    rollout = commands.add_parser("rollout", help="steer the challenger's rollout (shadow | canary and share)")
    actions = rollout.add_subparsers(dest="rollout_command", required=True, metavar="ACTION")
    change = actions.add_parser("set", help="change the challenger's share and/or mode (every server follows)")
    change.add_argument("--share", type=float, default=None, help="canary: fraction of rows, 0 < share < 1")
    change.add_argument("--mode", choices=("canary", "shadow"), default=None)
    change.add_argument("--by", default=None, help="who (default: $USER)")
    change.set_defaults(handler=command_set)
    show = actions.add_parser("show", help="champion, challenger, previous, the rollout and the last alias moves")
    show.add_argument("--last", type=int, default=10, help="how many alias moves to print")
    show.set_defaults(handler=command_show)
    back = commands.add_parser("rollback", help="move champion back to previous (or --to VERSION) now")
    back.add_argument("--to", default=None, help="the version to make champion (default: the 'previous' alias)")
    back.add_argument("--reason", default=None, help="why (recorded on the rolled-back version)")
    back.add_argument("--by", default=None, help="who (default: $USER)")
    back.set_defaults(handler=command_rollback)
