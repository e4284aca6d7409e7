"""The day's drift report in Chromium, offline and without errors: its first heading is the platform's verdict
— the same result as the `no_feature_drift` check, for a drifted day and a stable one — and Evidently's
per-column table below it agrees with the `drift_report` asset's value. `drift_history` renders with its
failed days marked, as a standalone page and in the Dagster UI."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest

from housing_platform.config.settings import DEFAULT_DATA_PATH
from housing_platform.core.drift import compute_drift
from housing_platform.core.drift_verdict import CHECK_NAME
from housing_platform.core.validation import read_housing_csv, validate_housing_frame
from housing_platform.devtools.platform_state import PlatformState
from housing_platform.devtools.scenarios import make_scenario
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


def _assert_offline_and_clean(page_log: PageLog) -> None:
    assert page_log.page_errors == [], page_log.page_errors
    assert page_log.console_errors == [], page_log.console_errors
    fetched = {urlparse(url).scheme for url in page_log.requests}
    assert fetched <= {"file", "data", "blob"}, f"the page fetched from the network: {page_log.requests}"


def test_drift_report_opens_offline_without_console_errors(
    drift_tour: Tour, platform_state: PlatformState, page_log: PageLog, screenshot_dir: Path
) -> None:
    assert platform_state.drift_html.exists()
    drift_tour.drift_html()
    drift_tour.screenshot(screenshot_dir, "06-drift-report-html")
    _assert_offline_and_clean(page_log)


def test_the_first_heading_of_a_drifted_day_is_the_failed_check(drift_tour: Tour, platform_state: PlatformState) -> None:
    passed = platform_state.checks["drift_report"][CHECK_NAME]
    assert passed is False, "the shifted traffic should drift"
    heading = drift_tour.drift_page(platform_state.drift_html)
    assert heading.startswith(f"Check {CHECK_NAME} failed: drift (")
    page = drift_tour.page
    # Evidently's own dataset-drift headline is reworded, never "NOT detected" beside a failed check.
    assert page.get_by_text("Dataset Drift is NOT detected", exact=False).count() == 0
    assert "one of the platform's four rules" in page.get_by_text("Evidently's dataset-drift rule", exact=False).first.inner_text()


def test_the_first_heading_of_a_stable_day_is_the_passed_check(
    drift_tour: Tour, page_log: PageLog, tmp_path: Path
) -> None:
    valid = validate_housing_frame(read_housing_csv(DEFAULT_DATA_PATH)).valid
    order = np.random.default_rng(7).permutation(len(valid))
    reference = valid.iloc[order[:3_000]].reset_index(drop=True)
    stable = make_scenario(valid.iloc[order[-2_000:]].reset_index(drop=True), "stable", 1_000, 0)
    result = compute_drift(reference, stable, prediction_column=None)
    assert result.check_passed
    html_path, _ = result.write_reports(tmp_path / "stable.html", tmp_path / "stable.json")

    heading = drift_tour.drift_page(html_path)
    assert heading == f"Check {CHECK_NAME} passed: no drift" == result.platform_verdict().headline
    _assert_offline_and_clean(page_log)


def test_drift_report_shows_the_per_column_drift_table(drift_tour: Tour, platform_state: PlatformState) -> None:
    drift_tour.drift_html()
    page = drift_tour.page
    features = [row for row in platform_state.drift_table if row["column"] != "prediction"]
    assert len(features) == 9

    for row in features:
        # Evidently's table (below the verdict's): its rows end with the score at full precision.
        cells = page.locator("div[id^=root_] tr").filter(has=page.get_by_text(row["column"], exact=True)).first
        text = cells.inner_text()
        verdict = "Detected" if row["drifted"] else "Not Detected"
        assert f"\t{verdict}\t" in f"\t{text}\t".replace("\n", "\t"), f"{row['column']}: {text!r}"
        shown_score = float(text.split()[-1])
        assert shown_score == pytest.approx(row["score"], abs=1e-5), row["column"]
    drifted = sum(bool(row["drifted"]) for row in features)
    summary = page.get_by_text("Drift is detected for", exact=False).first.inner_text()
    assert f"({drifted} out of {len(features)})" in summary


def test_drift_history_page_marks_the_failed_day(
    drift_tour: Tour, platform_state: PlatformState, page_log: PageLog, screenshot_dir: Path
) -> None:
    drift_tour.drift_history_html()
    drift_tour.screenshot(screenshot_dir, "analyst-04-history-page")
    page = drift_tour.page
    failed = page.locator("tr.failed")
    assert failed.count() == 1
    assert failed.first.get_attribute("data-day") == platform_state.partition_key
    assert "FAILED" in failed.first.inner_text()
    assert page.locator("h1").first.inner_text() == f"Drift history: 1 of 30 days failed {CHECK_NAME}"
    assert page.locator("img").first.evaluate("i => i.naturalWidth") > 300
    _assert_offline_and_clean(page_log)


def test_drift_history_renders_in_the_dagster_ui(tour: Tour, page_log: PageLog, screenshot_dir: Path) -> None:
    dialog = tour.drift_history()
    tour.screenshot(screenshot_dir, "analyst-03-history-ui")
    images = dialog.locator("img")
    assert images.count() == 1 and images.first.evaluate("i => i.naturalWidth") > 300
    tour.close_dialog()
    assert tour.page.get_by_text("1 of 30 days failed", exact=False).count() >= 1
    assert page_log.page_errors == [], page_log.page_errors
