"""`housing-platform labels list|approve|reject`: a person decides on labels the label gate held.

`labelled_traffic` holds labelled captures that fail its checks (schema, volume per source, consistency
with the trusted data) as batches in the capture database (`adapters/capture/label_reviews.py`).
``list`` shows the held batches (``--all``: every batch, decided and admitted ones too) with their rule,
source, size and reason; ``approve --batch ID`` releases a batch into the next `labelled_traffic` (it
is trained on from then on); ``reject --batch ID`` discards it for good. The decision is recorded on the
batch: who (``--by``, default ``$USER``), when (UTC) and why (``--reason``, required).

Exit codes: 0 listed or decided; 1 refused (the batch is not held: already decided, or admitted);
2 no such batch.
"""

from __future__ import annotations

import argparse
import sys

from housing_platform.cli.decisions import decided_by

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_NOT_FOUND = 2
REASON_WIDTH = 110


def _reviews():
    from housing_platform.adapters.capture.label_reviews import LabelReviews
    from housing_platform.adapters.capture.store import CaptureStore
    from housing_platform.config.runtime import process_settings

    store = CaptureStore(process_settings().capture_url)
    return LabelReviews(store), store


def command_list(args: argparse.Namespace) -> int:
    from housing_platform.adapters.capture.label_reviews import HELD

    reviews, store = _reviews()
    try:
        batches = reviews.batches(None if args.all else HELD)
    finally:
        store.dispose()
    if batches.empty:
        print("no label batches" + ("" if args.all else " held for review"))
        return EXIT_OK
    print(f"{'batch':>5}  {'status':<8}  {'rule':<11}  {'rows':>6}  {'source':<14}  {'created (UTC)':<16}  reason / decision")
    for batch in batches.itertuples():
        decision = (f"  → {batch.status} by {batch.decided_by} at {batch.decided_at:%Y-%m-%d %H:%M}: {batch.decision_reason}"
                    if batch.decision_reason else "")
        reason = batch.reason if len(batch.reason) <= REASON_WIDTH else batch.reason[: REASON_WIDTH - 1] + "…"
        print(f"{batch.batch_id:>5}  {batch.status:<8}  {batch.rule:<11}  {batch.row_count:>6,}  {batch.source:<14}  "
              f"{batch.created_at:%Y-%m-%d %H:%M}  {reason}{decision}")
    return EXIT_OK


def _decide(args: argparse.Namespace, approve: bool) -> int:
    from housing_platform.adapters.capture.label_reviews import BatchAlreadyDecided, BatchNotFound

    reviews, store = _reviews()
    try:
        batch = reviews.decide(args.batch, approve=approve, by=decided_by(args), why=args.reason)
    except BatchNotFound as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except BatchAlreadyDecided as error:
        print(f"refused: {error}", file=sys.stderr)
        return EXIT_REFUSED
    finally:
        store.dispose()
    effect = ("released: the next labelled_traffic (any retraining) trains on its rows" if approve
              else "discarded: its rows are never trained on")
    print(f"label batch {batch['batch_id']} ({batch['row_count']:,} rows from {batch['source']}, {batch['rule']}) "
          f"{batch['status']} by {batch['decided_by']} at {batch['decided_at']:%Y-%m-%d %H:%M} UTC — {effect}")
    return EXIT_OK


def add_parser(commands) -> None:
    """`labels` and its subcommands, on the main parser's subcommands."""
    labels = commands.add_parser("labels", help="review labelled traffic the label gate held: list | approve | reject")
    actions = labels.add_subparsers(dest="labels_command", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="held label batches (with --all: every batch)")
    listing.add_argument("--all", action="store_true", help="also decided and admitted batches")
    listing.set_defaults(handler=command_list)

    for name, approve, text in (
        ("approve", True, "release a held batch: the next labelled_traffic trains on it"),
        ("reject", False, "discard a held batch: it is never trained on"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("--batch", type=int, required=True, metavar="ID", help="the batch id `labels list` shows")
        action.add_argument("--reason", required=True, help="why (recorded with the decision)")
        action.add_argument("--by", default=None, help="who decides (default: $USER)")
        action.set_defaults(handler=lambda args, approve=approve: _decide(args, approve))
