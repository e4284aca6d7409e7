"""`housing-platform score`: score a CSV/Parquet of districts with the champion (the server's fast path).

The registry is the active profile's (``config/runtime.py``): the state folder's in the embedded
profile, the MLflow tracking server in the production profile, as for `serve`.

Exit codes: 0 the output was written (rows breaking a schema rule are kept, unscored, with their
rules in `rejected_rules`), 1 no model could be loaded, 2 the input cannot be read, the output
cannot be written or the profile is misconfigured.
"""

from __future__ import annotations

import argparse
import sys

from housing_platform.cli.main import EXIT_NO_MODEL, EXIT_OK, EXIT_UNREADABLE


def add_parser(commands) -> None:
    """`score`, on the main parser's subcommands."""
    from housing_platform.server.server_config import DEFAULT_MODEL_URI

    score = commands.add_parser(
        "score",
        help="score a CSV/Parquet of districts with the champion (the server's fast path) into Parquet/CSV",
        description="Writes the input rows plus prediction, model_version, out_of_range and rejected_rules. "
        "Exit 0: written; 1: no model could be loaded; 2: unreadable input or unwritable output.",
    )
    score.add_argument("input", help="CSV or Parquet file with the district feature columns")
    score.add_argument("output", help="where to write the scored rows (.parquet or .csv)")
    score.add_argument("--model-uri", default=DEFAULT_MODEL_URI, help=f"default: {DEFAULT_MODEL_URI}")
    score.set_defaults(handler=command_score)



def command_score(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from housing_platform.config.runtime import process_settings
    from housing_platform.scoring.batch import InputFileError, read_districts
    from housing_platform.scoring.errors import ScoringError

    settings = process_settings()  # the active profile's registry (production: the MLflow server); checked first
    try:
        frame = read_districts(args.input)
    except InputFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_UNREADABLE
    output = Path(args.output)
    if output.suffix.lower() not in (".parquet", ".csv"):
        print(f"error: {output}: the output must end in .parquet or .csv", file=sys.stderr)
        return EXIT_UNREADABLE

    from housing_platform.adapters.mlflow_registry import ModelRegistry
    from housing_platform.adapters.model_uri import ModelReference, resolve_version
    from housing_platform.config.environment import apply_process_defaults
    from housing_platform.scoring.batch import BATCH_PRECISION, score_frame
    from housing_platform.scoring.verification import load_fast_scorer

    apply_process_defaults(settings)
    try:
        reference = ModelReference.parse(args.model_uri)
        registry = ModelRegistry(settings.mlflow_tracking_uri, settings.mlflow_artifact_root, model_name=reference.name,
                                 must_exist=True)
        version = resolve_version(registry, reference)
        scorer = load_fast_scorer(f"models:/{reference.name}/{version}", precision=BATCH_PRECISION)
    except ScoringError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_NO_MODEL
    started = time.perf_counter()
    scored = score_frame(scorer, frame, version)
    seconds = time.perf_counter() - started
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        scored.to_parquet(output, index=False) if output.suffix.lower() == ".parquet" else scored.to_csv(output, index=False)
    except OSError as error:
        print(f"error: cannot write {output}: {error}", file=sys.stderr)
        return EXIT_UNREADABLE
    rejected = int((scored["rejected_rules"] != "").sum())
    print(
        f"{args.input}: {len(scored):,} rows scored with {reference.name} version {version} in {seconds:.2f} s "
        f"({len(scored) - rejected:,} predicted, {rejected:,} rejected by schema rules) -> {output}"
    )
    return EXIT_OK
