"""Fixtures of the browser tests: one platform state, one Dagster webserver and one Chromium per session.

The pieces themselves live in ``housing_platform.devtools`` (``platform_state``, ``webserver``,
``ui_tour``), which ``scripts/screenshots.py`` uses too; tests never serve as a library.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from housing_platform.config.settings import PROJECT_ROOT
from housing_platform.devtools.platform_state import PlatformState, build_platform_state, platform_environment
from housing_platform.devtools.ui_tour import PageLog, Tour, chromium_browser, new_page
from housing_platform.devtools.webserver import DagsterWebserver

SCREENSHOT_DIR = PROJECT_ROOT / "test-artifacts" / "screenshots"


# --- fixtures ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def platform_state(tmp_path_factory: pytest.TempPathFactory) -> PlatformState:
    home = tmp_path_factory.mktemp("browser_state")
    with platform_environment(home) as settings:
        return build_platform_state(settings)


@pytest.fixture(scope="session")
def dagster_webserver(platform_state: PlatformState) -> Iterator[DagsterWebserver]:
    with DagsterWebserver(platform_state.settings) as webserver:
        yield webserver


@pytest.fixture(scope="session")
def browser():
    with chromium_browser() as chromium:
        yield chromium


@pytest.fixture
def page_log() -> PageLog:
    return PageLog()


@pytest.fixture
def page(browser, page_log: PageLog):
    page = new_page(browser, page_log)
    yield page
    page.context.close()


@pytest.fixture
def tour(page, dagster_webserver: DagsterWebserver, platform_state: PlatformState) -> Tour:
    return Tour(page, dagster_webserver.url, platform_state)


@pytest.fixture
def screenshot_dir() -> Path:
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    return SCREENSHOT_DIR
