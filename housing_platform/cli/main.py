"""`housing-platform`: the command line of the platform.

Subcommands import what they need lazily, so `housing-platform validate` answers in a second and
never pays for TensorFlow or Dagster.

Exit codes of `validate`: 0 the file passes the gate, 1 it does not, 2 it cannot be read at all.
Exit codes of `serve`: 0 stopped cleanly (Ctrl-C / SIGTERM, captures flushed), 1 the server failed
(port in use, captures lost at shutdown), 2 invalid arguments (e.g. a malformed model URI, or a
non-loopback --host while no API token exists: see `housing-platform token`).
Exit codes of `score`: 0 the output was written (rows breaking a schema rule are kept, unscored, with
their rules in `rejected_rules`), 1 no model could be loaded, 2 the input cannot be read or the output
cannot be written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from housing_platform.config.settings import SERVER_HOST, SERVER_PORT

# One name per meaning; the numbers are the documented ones above (1: the command's answer is "no"
# or its work failed; 2: it could not start on what it was given).
EXIT_OK = 0
EXIT_GATE_FAILED = 1  # validate: the file does not pass the data gate
EXIT_REQUESTS_FAILED = 1  # simulate: some requests failed
EXIT_SERVER_FAILED = 1  # serve: the server could not start or lost captures
EXIT_NO_MODEL = 1  # score: no model could be loaded
EXIT_UNREADABLE = 2  # the input cannot be read, the output cannot be written, the server cannot be reached
EXIT_INVALID_ARGUMENTS = 2  # an argument breaks its rule (e.g. a malformed model URI)


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


def command_simulate(args: argparse.Namespace) -> int:
    import httpx

    from housing_platform.config.settings import HousingSettings
    from housing_platform.devtools.simulator import simulate

    settings = HousingSettings.from_env()
    token = args.token or (settings.api_token.get_secret_value() if settings.api_token else None)
    try:
        result = simulate(
            args.url, args.scenario, args.rows, data_path=args.data or settings.data_path, feedback=args.feedback,
            seed=args.seed, batch_size=args.batch_size, token=token,
        )
    except httpx.TransportError as error:
        print(f"error: cannot reach the model server at {args.url}: {error}", file=sys.stderr)
        return EXIT_UNREADABLE
    print(result.describe())
    for error in result.errors[:5]:
        print(f"  {error}", file=sys.stderr)
    return EXIT_OK if result.failed_requests == 0 else EXIT_REQUESTS_FAILED


def command_serve(args: argparse.Namespace) -> int:
    import logging

    from housing_platform.adapters.model_uri import ModelReference
    from housing_platform.scoring.errors import ScoringError

    try:
        ModelReference.parse(args.model_uri)
    except ScoringError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID_ARGUMENTS
    if not 0 <= args.capture_sample_percent <= 100:
        print("error: --capture-sample-percent must be between 0 and 100", file=sys.stderr)
        return EXIT_INVALID_ARGUMENTS

    import uvicorn

    from housing_platform.config.environment import apply_process_defaults
    from housing_platform.config.settings import HousingSettings
    from housing_platform.server.app import create_app
    from housing_platform.server.http_protocol import uvicorn_options
    from housing_platform.server.server_config import ServingConfig

    settings = HousingSettings.from_env()
    from housing_platform.server.auth import is_loopback, startup_problem

    if problem := startup_problem(args.host, str(settings.tokens_path)):  # never serve others without tokens
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_INVALID_ARGUMENTS
    apply_process_defaults(settings)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = ServingConfig.from_settings(
        settings,
        model_uri=args.model_uri,
        poll_interval_seconds=args.poll_interval_seconds,
        capture_sample_percent=args.capture_sample_percent,
        capture_queue_rows=args.capture_queue_rows,
        capture_overflow=args.capture_overflow,
        header_read_timeout_seconds=args.header_read_timeout_seconds,
        body_read_timeout_seconds=args.body_read_timeout_seconds,
        keep_alive_timeout_seconds=args.keep_alive_timeout_seconds,
        max_connections=args.max_connections,
    )
    from housing_platform.adapters.mlflow_registry import MissingTrackingDatabase, require_tracking_database

    try:  # a wrong HOUSING_HOME or MLFLOW_TRACKING_URI: say so, rather than serve from an empty new registry
        require_tracking_database(config.tracking_uri)
    except MissingTrackingDatabase as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_SERVER_FAILED
    config = config.model_copy(update={"require_tokens": not is_loopback(args.host)})  # fail closed off loopback
    app = create_app(config)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=args.host, port=args.port, loop="uvloop", access_log=False,
            log_level=args.log_level, timeout_graceful_shutdown=config.shutdown_flush_seconds, lifespan="on",
            **uvicorn_options(config),  # httptools with read deadlines, keep-alive timeout, connection cap
        )
    )
    # uvicorn handles SIGINT/SIGTERM (graceful shutdown: in-flight requests, then the capture flush)
    # and re-raises the signal afterwards; with these handlers in place that re-raise is a no-op, so
    # a requested stop ends with the exit code below instead of "killed by signal".
    import signal

    stop_requests: list[int] = []
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda received, frame: stop_requests.append(received))
    try:
        server.run()
    except SystemExit:  # uvicorn exits with its own code when it cannot start (e.g. the port is taken)
        return EXIT_SERVER_FAILED
    if not server.started:  # uvicorn has logged why
        return EXIT_SERVER_FAILED
    writer = app.state.server.writer
    if writer is not None and writer.stats().dropped:
        print(f"warning: {writer.stats().dropped} capture rows were dropped", file=sys.stderr)
        return EXIT_SERVER_FAILED
    return EXIT_OK


def command_score(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from housing_platform.scoring.batch import InputFileError, read_districts
    from housing_platform.scoring.errors import ScoringError

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
    from housing_platform.config.settings import HousingSettings
    from housing_platform.scoring.batch import BATCH_PRECISION, score_frame
    from housing_platform.scoring.verification import load_fast_scorer

    settings = HousingSettings.from_env()
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

    from housing_platform.devtools.scenarios import SCENARIOS

    simulate = commands.add_parser(
        "simulate",
        help="send scenario traffic (and feedback) from held-out districts to a running server",
        description="Real HTTP requests to /v1/predict (and /v1/feedback with --feedback). "
        "Exit 0: every request succeeded; 1: some failed; 2: the server is unreachable.",
    )
    simulate.add_argument("--url", default=f"http://{SERVER_HOST}:{SERVER_PORT}", help="server base URL")
    simulate.add_argument("--scenario", choices=SCENARIOS, default="stable")
    simulate.add_argument("--rows", type=int, default=1_000, help="districts to send")
    simulate.add_argument("--feedback", action="store_true", help="also send the true values as feedback")
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--batch-size", type=int, default=100, help="rows per request")
    simulate.add_argument("--data", default=None, help="district CSV to draw from (default: HOUSING_DATA_PATH)")
    simulate.add_argument("--token", default=None, help="bearer token for a server that holds tokens "
                          "(default: HOUSING_API_TOKEN)")
    simulate.set_defaults(handler=command_simulate)

    from housing_platform.server.server_config import DEFAULT_MODEL_URI, ServingConfig

    serving = {name: field.default for name, field in ServingConfig.model_fields.items()}

    serve = commands.add_parser(
        "serve",
        help="run the model server (FastAPI on uvicorn) for the champion, with data capture",
        description="Serve /v1/predict, /v1/feedback, /health, /ready, /metrics (docs at /docs). Follows the "
        "alias of --model-uri and swaps versions without failing a request. Stop with Ctrl-C or SIGTERM: "
        "captures are flushed. Exit 0: clean stop; 1: server failure or captures lost; 2: invalid arguments.",
    )
    serve.add_argument("--model-uri", default=DEFAULT_MODEL_URI, help=f"default: {DEFAULT_MODEL_URI}")
    serve.add_argument("--host", default=SERVER_HOST, help=f"default: {SERVER_HOST}")
    serve.add_argument("--port", type=int, default=SERVER_PORT, help=f"default: {SERVER_PORT}")
    serve.add_argument("--poll-interval-seconds", type=float, default=serving["poll_interval_seconds"],
                       help="how often the alias is checked for a new version; 0: never "
                       f"(default: {serving['poll_interval_seconds']:g})")
    serve.add_argument("--capture-sample-percent", type=float, default=serving["capture_sample_percent"],
                       help=f"share of scored rows captured (default: {serving['capture_sample_percent']:g})")
    serve.add_argument("--capture-queue-rows", type=int, default=serving["capture_queue_rows"],
                       help=f"bound on capture rows in memory; past it predict answers 503 + Retry-After, never drops "
                            f"(default: {serving['capture_queue_rows']})")
    serve.add_argument("--capture-overflow", choices=("backpressure", "spill"), default=serving["capture_overflow"],
                       help="past --capture-queue-rows: 503 + Retry-After (backpressure), or answer after writing the rows "
                            f"to the durable spill in the state folder (spill) (default: {serving['capture_overflow']})")
    for name, unit in (("header_read_timeout_seconds", "s"), ("body_read_timeout_seconds", "s"),
                       ("keep_alive_timeout_seconds", "s"), ("max_connections", "")):
        field = ServingConfig.model_fields[name]
        serve.add_argument("--" + name.replace("_", "-"), type=field.annotation, default=serving[name],
                           help=f"{field.description} (default: {serving[name]:g}{unit})")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(handler=command_serve)

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


if __name__ == "__main__":
    sys.exit(main())
