"""`housing-platform`: the command line of the platform.

Subcommands import what they need lazily, so `housing-platform validate` answers in a second and
never pays for TensorFlow or Dagster.

Exit codes of `validate`: 0 the file passes the gate, 1 it does not, 2 it cannot be read at all.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

EXIT_OK, EXIT_GATE_FAILED, EXIT_UNREADABLE = 0, 1, 2


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
    from housing_platform.validation import (
        StructuralValidationError,
        UnreadableDataError,
        evaluate_gate,
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
    gate = evaluate_gate(
        outcome,
        max_quarantine_share=args.max_quarantine_share,
        max_duplicate_share=args.max_duplicate_share,
        min_rows=args.min_rows,
    )
    print("\ngate:")
    for result in gate:
        print(f"  {'PASS' if result.passed else 'FAIL'}  {result.name}: {result.description}")
    passed = all(result.passed for result in gate)
    print(f"\n{args.path}: {'PASSED' if passed else 'FAILED'} the data gate")
    return EXIT_OK if passed else EXIT_GATE_FAILED


def command_init(args: argparse.Namespace) -> int:
    from housing_platform.settings import HousingSettings

    settings = HousingSettings.from_env()
    home = settings.ensure_dagster_home()
    print(f"state folder:   {settings.home}")
    print(f"DAGSTER_HOME:   {home} (dagster.yaml: SQLite storage, telemetry off)")
    print(f"data file:      {settings.data_path}")
    return EXIT_OK


def command_demo(args: argparse.Namespace) -> int:
    from housing_platform.demo import run_demo

    return run_demo()


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
    validate.add_argument("--max-quarantine-share", type=float, default=0.01, help="default: 0.01")
    validate.add_argument("--max-duplicate-share", type=float, default=0.01, help="default: 0.01")
    validate.add_argument("--min-rows", type=int, default=1_000, help="default: 1000")
    validate.set_defaults(handler=command_validate)

    init = commands.add_parser("init", help="create the state folder and the Dagster instance config")
    init.set_defaults(handler=command_init)

    demo = commands.add_parser("demo", help="materialize the whole asset graph into the state folder and report")
    demo.set_defaults(handler=command_demo)
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


if __name__ == "__main__":
    sys.exit(main())
