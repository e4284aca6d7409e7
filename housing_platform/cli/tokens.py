"""`housing-platform token create | list | revoke`: the model server's API tokens.

Tokens live hashed in ``<HOUSING_HOME>/server/tokens.json`` (:mod:`housing_platform.adapters.token_store`);
a running server picks up a change within ``tokens_check_interval_seconds``, so a revoke needs no restart.
``create`` prints the token alone on stdout — once: only its hash is kept — and what it is on stderr, so
``TOKEN=$(housing-platform token create --scope predict)`` captures just the token.

Exit codes: 0 done; 2 the tokens file cannot be read or written, or an argument breaks its rule (an
unknown token id, a rate below 1).
"""

from __future__ import annotations

import argparse
import sys

from housing_platform.adapters.token_store import SCOPES, TokenFileError, TokenStore, UnknownToken
from housing_platform.cli.main import EXIT_INVALID_ARGUMENTS, EXIT_OK, EXIT_UNREADABLE


def _store() -> TokenStore:
    from housing_platform.config.settings import HousingSettings

    return TokenStore(HousingSettings.from_env().tokens_path)


def _default_rate() -> int:
    from housing_platform.server.server_config import serving_default

    return serving_default("feedback_rate_per_minute")


def command_create(args: argparse.Namespace) -> int:
    if args.feedback_rate_per_minute is not None and args.feedback_rate_per_minute < 1:
        print("error: --feedback-rate-per-minute must be at least 1", file=sys.stderr)
        return EXIT_INVALID_ARGUMENTS
    store = _store()
    try:
        token, record = store.create(args.scopes, name=args.name, feedback_rate_per_minute=args.feedback_rate_per_minute)
    except (TokenFileError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_UNREADABLE
    rate = record.feedback_rate_per_minute or f"the server's default ({_default_rate():,})"
    print(
        f"created token {record.id} ({record.name}): scopes {', '.join(record.scopes)}; "
        + (f"feedback limit {rate} labels per minute; " if "feedback" in record.scopes else "")
        + f"its SHA-256 is stored in {store.path}. The token below is shown once and cannot be recovered "
        f"(revoke it with `housing-platform token revoke {record.id}`). Send it as `Authorization: Bearer <token>`.",
        file=sys.stderr,
    )
    print(token)
    return EXIT_OK


def command_list(args: argparse.Namespace) -> int:
    store = _store()
    try:
        tokens = store.read()
    except TokenFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_UNREADABLE
    if not tokens.configured:
        print(f"no tokens in {store.path}: a server on loopback answers without authentication")
        return EXIT_OK
    rows = [("id", "name", "scopes", "created_at", "feedback/min", "status")]
    default = f"default ({_default_rate():,})"
    for record in tokens.records:
        status = "active" if record.active else f"revoked {record.revoked_at:%Y-%m-%d %H:%M:%S}Z"
        rate = f"{record.feedback_rate_per_minute:,}" if record.feedback_rate_per_minute else default
        rows.append((record.id, record.name, ",".join(record.scopes), f"{record.created_at:%Y-%m-%d %H:%M:%S}Z",
                     rate, status))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return EXIT_OK


def command_revoke(args: argparse.Namespace) -> int:
    store = _store()
    try:
        record = store.revoke(args.token_id)
    except UnknownToken:
        print(f"error: no token has the id {args.token_id!r} (see `housing-platform token list`)", file=sys.stderr)
        return EXIT_INVALID_ARGUMENTS
    except (TokenFileError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_UNREADABLE
    print(f"revoked token {record.id} ({record.name}) at {record.revoked_at:%Y-%m-%d %H:%M:%S}Z; running servers "
          "refuse it once they re-read the tokens file (within tokens_check_interval_seconds)")
    return EXIT_OK


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``token`` and its actions to the top-level subcommands."""
    token = commands.add_parser(
        "token",
        help="create, list or revoke API tokens of the model server (scopes: predict, feedback, admin)",
        description="Bearer tokens for the model server, stored hashed in <HOUSING_HOME>/server/tokens.json. Once "
        "the file holds a token, /v1/predict needs scope predict, /v1/feedback scope feedback and /metrics scope "
        "admin. Exit 0: done; 2: unreadable tokens file or invalid argument.",
    )
    actions = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a token and print it once (only its hash is stored)")
    create.add_argument("--scope", dest="scopes", action="append", choices=SCOPES, required=True,
                        help="a scope the token grants; repeat for several")
    create.add_argument("--name", default=None, help="a name for people (default: token-<id>)")
    create.add_argument("--feedback-rate-per-minute", type=int, default=None,
                        help="labels this token may send per minute (default: the server's feedback_rate_per_minute)")
    create.set_defaults(handler=command_create)
    listing = actions.add_parser("list", help="ids, names, scopes and status of every token (no secrets)")
    listing.set_defaults(handler=command_list)
    revoke = actions.add_parser("revoke", help="revoke a token by id (kept on file, refused by servers)")
    revoke.add_argument("token_id", help="the id shown by `token create` / `token list`")
    revoke.set_defaults(handler=command_revoke)
