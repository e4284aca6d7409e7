"""`housing-platform serve`: the model server (FastAPI on uvicorn) for the champion, with data capture.

Its registry and capture store are the active profile's (``config/runtime.py``): the state folder's
in the embedded profile; in the production profile the MLflow tracking server and the PostgreSQL
capture store, so any number of replicas on any hosts follow one alias and capture into one store.

``--workers N`` runs N such servers as processes sharing the port, under uvicorn's supervisor
(``server/workers.py``); Ctrl-C / SIGTERM to the parent stops every worker gracefully.

Exit codes: 0 stopped cleanly (Ctrl-C / SIGTERM, captures flushed), 1 the server failed (port in use,
captures lost at shutdown by any worker), 2 invalid arguments or a misconfigured profile (e.g. a malformed model
URI, a non-loopback --host while no API token exists: see `housing-platform token`).
"""

from __future__ import annotations

import argparse
import sys

from housing_platform.cli.main import EXIT_INVALID_ARGUMENTS, EXIT_OK, EXIT_SERVER_FAILED
from housing_platform.config.settings import SERVER_HOST, SERVER_PORT


def add_parser(commands) -> None:
    """`serve`, on the main parser's subcommands (its defaults are ServingConfig's)."""
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
    serve.add_argument("--workers", type=int, default=serving["workers"],
                       help="server processes sharing the port (uvicorn's supervisor), each with its own model, "
                            f"capture writer and /metrics (default: {serving['workers']})")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(handler=command_serve)



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
    if args.workers < 1:
        print(f"error: --workers must be at least 1, got {args.workers}", file=sys.stderr)
        return EXIT_INVALID_ARGUMENTS
    from housing_platform.config.runtime import process_settings

    # The active profile's registry and capture store; a misconfigured profile stops here, before
    # TensorFlow is imported (main() turns ProfileConfigurationError into exit code 2).
    settings = process_settings()

    from housing_platform.config.environment import apply_process_defaults
    from housing_platform.server.auth import is_loopback, startup_problem
    from housing_platform.server.server_config import ServingConfig
    from housing_platform.server.workers import LOG_FORMAT

    if problem := startup_problem(args.host, str(settings.tokens_path)):  # never serve others without tokens
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_INVALID_ARGUMENTS
    apply_process_defaults(settings)
    logging.basicConfig(level=args.log_level.upper(), format=LOG_FORMAT)
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
        workers=args.workers,
    )
    from housing_platform.adapters.mlflow_registry import MissingTrackingDatabase, require_tracking_database

    try:  # a wrong HOUSING_HOME or MLFLOW_TRACKING_URI: say so, rather than serve from an empty new registry
        require_tracking_database(config.tracking_uri)
    except MissingTrackingDatabase as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_SERVER_FAILED
    config = config.model_copy(update={"require_tokens": not is_loopback(args.host)})  # fail closed off loopback
    if config.workers > 1:
        return _serve_workers(config, args)
    return _serve_one(config, args)


def _serve_one(config, args: argparse.Namespace) -> int:
    import signal

    import uvicorn

    from housing_platform.server.app import create_app
    from housing_platform.server.workers import server_settings

    app = create_app(config)
    server = uvicorn.Server(uvicorn.Config(app, **server_settings(config, host=args.host, port=args.port,
                                                                  log_level=args.log_level)))
    # uvicorn handles SIGINT/SIGTERM (graceful shutdown: in-flight requests, then the capture flush)
    # and re-raises the signal afterwards; with these handlers in place that re-raise is a no-op, so
    # a requested stop ends with the exit code below instead of "killed by signal".
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


def _serve_workers(config, args: argparse.Namespace) -> int:
    """N workers under uvicorn's supervisor (``server/workers.py``); SIGTERM / Ctrl-C stops each gracefully."""
    from housing_platform.server.workers import CAPTURES_LOST, CLEAN_STOPS, WorkerConfig, run_workers

    try:
        codes = run_workers(WorkerConfig(config, host=args.host, port=args.port, log_level=args.log_level))
    except SystemExit:  # the port cannot be bound (uvicorn has logged why)
        return EXIT_SERVER_FAILED
    if lost := codes.count(CAPTURES_LOST):
        print(f"warning: {lost} of {len(codes)} workers dropped capture rows at shutdown", file=sys.stderr)
        return EXIT_SERVER_FAILED
    if failed := [code for code in codes if code not in CLEAN_STOPS]:
        print(f"error: workers ended with exit codes {failed} (see the log above)", file=sys.stderr)
        return EXIT_SERVER_FAILED
    return EXIT_OK
