"""What every recorded human decision (a held label batch released or discarded, a pending version
approved or rejected) says about who made it."""

from __future__ import annotations

import argparse
import getpass
import os


def decided_by(args: argparse.Namespace) -> str:
    """``--by`` when given, else the login name (``$USER``), else ``unknown`` (a bare container has none)."""
    if args.by:
        return args.by
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
