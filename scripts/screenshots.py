"""Refresh the screenshots of `docs/tour.md` and `docs/analyst-guide.md` (`make screenshots`).

Builds a fresh platform state in a temporary folder exactly as the browser tests do (train → serve
shifted traffic → monitor), starts the Dagster webserver on it, and walks the tour's pages in headless
Chromium with the same code the tests use (`housing_platform/devtools/ui_tour.py`), writing one
PNG per page to `docs/images/`. Needs Debian's Chromium (`apt-get install chromium`); downloads nothing.
Takes about two minutes on two cores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from housing_platform.config.settings import PROJECT_ROOT
from housing_platform.devtools.platform_state import (
    build_platform_state,
    existing_platform_state,
    platform_environment,
)
from housing_platform.devtools.ui_tour import (
    ANALYST_STOPS,
    TOUR_STOPS,
    chromium_browser,
    chromium_executable,
    new_page,
    take_tour,
)
from housing_platform.devtools.webserver import DagsterWebserver

DEFAULT_OUTPUT = PROJECT_ROOT / "docs" / "images"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="folder for the PNG files")
    parser.add_argument("--keep-state", type=Path, default=None,
                        help="build the state in this folder and keep it (default: a temporary folder)")
    parser.add_argument("--from-state", type=Path, default=None,
                        help="screenshot the analyst's pages of this existing state folder (e.g. after `make demo`, "
                        "where the loop closed) instead of building one; implies --only-analyst")
    parser.add_argument("--only-analyst", action="store_true",
                        help="only the pages of docs/analyst-guide.md (analyst-*.png), not those of docs/tour.md")
    args = parser.parse_args(argv)
    if chromium_executable() is None:
        print("error: Chromium is not installed (apt-get install chromium)", file=sys.stderr)
        return 2

    stops = ANALYST_STOPS if args.only_analyst or args.from_state else TOUR_STOPS + ANALYST_STOPS
    started = time.perf_counter()
    if args.from_state:
        with platform_environment(args.from_state.resolve()) as settings:
            state = existing_platform_state(settings)
        with DagsterWebserver(state.settings) as webserver, chromium_browser() as browser:
            paths = take_tour(new_page(browser), webserver.url, state, args.output, stops)
        for path in paths:
            print(f"wrote {path}")
        return 0
    with tempfile.TemporaryDirectory(prefix="housing-screenshots-") as temporary:
        home = args.keep_state.resolve() if args.keep_state else Path(temporary)
        with platform_environment(home) as settings:
            print(f"building the platform state in {home} ...", flush=True)
            state = build_platform_state(settings)
        print(f"state built in {sum(state.seconds.values()):.0f} s; starting the webserver ...", flush=True)
        with DagsterWebserver(state.settings) as webserver, chromium_browser() as browser:
            page = new_page(browser)
            paths = take_tour(page, webserver.url, state, args.output, stops)
    for path in paths:
        print(f"wrote {path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path}")
    print(f"{len(paths)} screenshots in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
