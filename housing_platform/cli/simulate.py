"""`housing-platform simulate`: scenario traffic (and feedback) from held-out districts to a running server.

Real HTTP requests to /v1/predict (and /v1/feedback with --feedback). Its defaults (the data file,
the API token) are the active profile's settings (``config/runtime.py``), as for `serve` and `score`.

Exit codes: 0 every request succeeded, 1 some failed, 2 the server is unreachable or the profile is
misconfigured.
"""

from __future__ import annotations

import argparse
import sys

from housing_platform.cli.main import EXIT_OK, EXIT_REQUESTS_FAILED, EXIT_UNREADABLE
from housing_platform.config.settings import SERVER_HOST, SERVER_PORT


def add_parser(commands) -> None:
    """`simulate`, on the main parser's subcommands."""
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



def command_simulate(args: argparse.Namespace) -> int:
    import httpx

    from housing_platform.config.runtime import process_settings
    from housing_platform.devtools.simulator import simulate

    settings = process_settings()  # the profile's state folder, data file and API token
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
