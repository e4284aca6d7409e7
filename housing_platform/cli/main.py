"""`housing-platform`: the command line of the platform.

Subcommands import what they need lazily, so `housing-platform validate` answers in a second and
never pays for TensorFlow or Dagster. `serve`, `score` and `simulate` live in their own modules
(``cli/serving.py``, ``cli/score.py``, ``cli/simulate.py``), with their exit codes.

Every command that needs the registry or the capture store reads the active profile
(``HOUSING_PROFILE``, ``config/runtime.py``); a misconfigured profile exits with 2 and an error
naming the variable and its rule, never with a silent fallback to the state folder.

Exit codes of `validate`: 0 the file passes the gate, 1 it does not, 2 it cannot be read at all.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

# One name per meaning; the numbers are the documented ones above (1: the command's answer is "no"
# or its work failed; 2: it could not start on what it was given).
EXIT_OK = 0
EXIT_GATE_FAILED = 1  # validate: the file does not pass the data gate
EXIT_REQUESTS_FAILED = 1  # simulate: some requests failed
EXIT_SERVER_FAILED = 1  # serve: the server could not start or lost captures
EXIT_NO_MODEL = 1  # score: no model could be loaded
EXIT_UNREADABLE = 2  # the input cannot be read, the output cannot be written, the server cannot be reached
EXIT_INVALID_ARGUMENTS = 2  # an argument (or a profile variable) breaks its rule (e.g. a malformed model URI)


def _print_rule_table(rows: list[dict], out=None) -> None:
    out = out or sys.stdout
    headers = ["rule", "column", "failing", "examples"]
    table = [[str(r["rule"]), str(r["column"]), f"{r['failing_count']:,}", str(r["examples"])] for r in rows]
    widths = [min(max(len(h), *(len(row[i]) for row in table)), 64) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for row in table:
        print("  ".join(cell[:64].ljust(w) for cell, w in zip(row, widths)), file=out)


def command_validate(args: argparse.Namespace) -> int:
    from housing_platform.core.validation import (
        DataGateLimits,
        StructuralValidationError,
        UnreadableDataError,
        evaluate_data_gate,
        read_housing_csv,
        validate_housing_frame,
    )

    try:
        frame = read_housing_csv(args.path)
    except UnreadableDataError as error:
        print(f"error: cannot read {error}", file=sys.stderr)
        return EXIT_UNREADABLE
    try:
        outcome = validate_housing_frame(frame)
    except StructuralValidationError as error:
        print(f"{args.path}: FAILED — structural problems, no row can be trusted\n")
        _print_rule_table(error.failures.to_dict("records"))
        return EXIT_GATE_FAILED

    print(f"{args.path}: {outcome.input_rows:,} rows, {len(outcome.valid):,} valid, {len(outcome.quarantine):,} quarantined")
    if outcome.extra_columns:
        print(f"ignored columns not in the schema: {', '.join(outcome.extra_columns)}")
    if len(outcome.summary):
        print("\nrow-level rule failures:")
        _print_rule_table(outcome.summary.to_dict("records"))
    limits = DataGateLimits(**{name: getattr(args, name) for name in DataGateLimits.model_fields})
    gate = evaluate_data_gate(outcome, limits)
    print("\ngate:")
    for result in gate:
        print(f"  {'PASS' if result.passed else 'FAIL'}  {result.name}: {result.description}")
    passed = all(result.passed for result in gate)
    print(f"\n{args.path}: {'PASSED' if passed else 'FAILED'} the data gate")
    return EXIT_OK if passed else EXIT_GATE_FAILED


def command_init(args: argparse.Namespace) -> int:
    from housing_platform.config.profiles import PRODUCTION, active_profile
    from housing_platform.config.settings import HousingSettings

    settings = HousingSettings.from_env()
    if active_profile() == PRODUCTION:
        from housing_platform.config.profiles import (
            ProductionSettings,
            ensure_production_databases,
            write_production_dagster_yaml,
        )

        production = ProductionSettings.from_env(settings)
        created = ensure_production_databases(production)
        home = write_production_dagster_yaml(production)
        print("profile:        production (PostgreSQL + S3)")
        print(f"databases:      {', '.join(created) or 'already present'}")
        print(f"DAGSTER_HOME:   {home} (dagster.yaml: PostgreSQL storage, telemetry off)")
    else:
        home = settings.ensure_dagster_home()
        print("profile:        embedded (everything in the state folder)")
        print(f"DAGSTER_HOME:   {home} (dagster.yaml: SQLite storage, telemetry off)")
    print(f"state folder:   {settings.home}")
    print(f"data file:      {settings.data_path}")
    return EXIT_OK


def command_demo(args: argparse.Namespace) -> int:
    from housing_platform.devtools.demo import run_demo

    return run_demo(args.scenario)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="housing-platform",
        description="House-price ML platform: validate data, serve and score models, simulate traffic.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = commands.add_parser(
        "validate",
        help="check a district CSV against the schema and the data gate",
        description="Apply the training schema and gate to any CSV. Exit 0: passes; 1: fails; 2: unreadable.",
    )
    validate.add_argument("path", help="CSV file with the district columns")
    from housing_platform.core.validation import DataGateLimits

    for name, field in DataGateLimits.model_fields.items():  # one option per limit, defaults from their home
        validate.add_argument(
            f"--{name.replace('_', '-')}", type=field.annotation, default=field.default,
            help=f"{field.description} (default: {field.default:g})",
        )
    validate.set_defaults(handler=command_validate)

    from housing_platform.cli import score, serving, simulate

    simulate.add_parser(commands)  # scenario traffic to a running server
    serving.add_parser(commands)  # the model server
    score.add_parser(commands)  # batch scoring of a file
    from housing_platform.cli import tokens

    tokens.add_parser(commands)  # token create | list | revoke

    from housing_platform.cli import labels

    labels.add_parser(commands)  # labels list | approve | reject --batch ID (held labelled traffic)

    init = commands.add_parser("init", help="create the state folder and the Dagster instance config")
    init.set_defaults(handler=command_init)

    demo = commands.add_parser("demo", help="materialize the whole asset graph into the state folder and report")
    demo.add_argument(
        "--scenario", choices=("loop", "rollback"), default="loop",
        help="loop: drift → retraining → canary → promote/reject (default); rollback: after `demo`, a worse "
        "version promoted directly is rolled back automatically on live labels",
    )
    demo.set_defaults(handler=command_demo)

    from housing_platform.cli import versions

    versions.add_parser(commands)  # approve | reject a version held in pending_approval
    from housing_platform.cli import rollout

    rollout.add_parser(commands)  # rollout set | show, rollback (safe rollout)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return EXIT_OK
    except ValueError as error:
        from housing_platform.config.profiles import ProfileConfigurationError  # not imported by `validate`

        if not isinstance(error, ProfileConfigurationError):
            raise
        print(f"error: {error}", file=sys.stderr)  # names the variable and its rule
        return EXIT_INVALID_ARGUMENTS


if __name__ == "__main__":
    sys.exit(main())
