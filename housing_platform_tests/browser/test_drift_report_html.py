"""The Evidently drift report the platform writes opens in Chromium, offline, without errors, and shows
the per-column drift table that agrees with the `drift_report` asset's value."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import pytest

from housing_platform.devtools.platform_state import PlatformState
from housing_platform.devtools.ui_tour import PageLog, Tour, chromium_executable

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(chromium_executable() is None, reason="no Chromium installed (apt-get install chromium)"),
]


@pytest.fixture
def drift_tour(page, platform_state: PlatformState) -> Tour:
    # A file on disk: no webserver needed.
    return Tour(page, "", platform_state)


def test_drift_report_opens_offline_without_console_errors(
    drift_tour: Tour, platform_state: PlatformState, page_log: PageLog, screenshot_dir: Path
) -> None:
    assert platform_state.drift_html.exists()
    drift_tour.drift_html()
    drift_tour.screenshot(screenshot_dir, "06-drift-report-html")

    assert page_log.page_errors == [], page_log.page_errors
    assert page_log.console_errors == [], page_log.console_errors
    fetched = {urlparse(url).scheme for url in page_log.requests}
    assert fetched <= {"file", "data", "blob"}, f"the report fetched from the network: {page_log.requests}"


def test_drift_report_shows_the_per_column_drift_table(drift_tour: Tour, platform_state: PlatformState) -> None:
    drift_tour.drift_html()
    page = drift_tour.page
    features = [row for row in platform_state.drift_table if row["column"] != "prediction"]
    assert len(features) == 9

    for row in features:
        cells = page.locator("tr").filter(has=page.get_by_text(row["column"], exact=True)).first
        text = cells.inner_text()
        verdict = "Detected" if row["drifted"] else "Not Detected"
        assert f"\t{verdict}\t" in f"\t{text}\t".replace("\n", "\t"), f"{row['column']}: {text!r}"
        shown_score = float(text.split()[-1])
        assert shown_score == pytest.approx(row["score"], abs=1e-5), row["column"]
    drifted = sum(bool(row["drifted"]) for row in features)
    summary = page.get_by_text("Drift is detected for", exact=False).first.inner_text()
    assert f"({drifted} out of {len(features)})" in summary
