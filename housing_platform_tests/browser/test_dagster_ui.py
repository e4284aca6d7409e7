"""The Dagster UI, in headless Chromium, shows what a person needs: the whole graph, the evaluation with
its metrics and plots, and which checks passed or failed — on a state materialized by the platform itself.

Screenshots of every page land in `test-artifacts/screenshots/` (the same pages as `docs/tour.md`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from housing_platform.core.model_gate import GATE_CHECKS
from housing_platform.core.numbers import DOLLARS, for_people
from housing_platform.devtools.platform_state import PlatformState
from housing_platform.devtools.ui_tour import PageLog, Tour, check_statuses, chromium_executable, graph_label_matches

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(chromium_executable() is None, reason="no Chromium installed (apt-get install chromium)"),
]


def _assert_no_uncaught_errors(page_log: PageLog) -> None:
    assert page_log.page_errors == [], page_log.page_errors


def test_global_lineage_shows_every_asset_of_the_graph(
    tour: Tour, platform_state: PlatformState, page_log: PageLog, screenshot_dir: Path
) -> None:
    labels = tour.global_lineage()
    tour.screenshot(screenshot_dir, "01-global-lineage")

    assert platform_state.asset_keys, "the definitions hold no assets"
    # The graph: one node per asset (long names are middle-truncated at this zoom level).
    unmatched = [key for key in platform_state.asset_keys if not any(graph_label_matches(l, key) for l in labels)]
    assert unmatched == [], f"not in the lineage graph: {unmatched}; labels shown: {labels}"
    for group in platform_state.group_names:
        assert group in labels, f"group box {group} missing from the graph"
    # The sidebar tree: every asset by its full name, under its group.
    for key in platform_state.asset_keys:
        assert tour.page.get_by_role("button", name=key).count() >= 1, f"{key} missing from the lineage sidebar"
    _assert_no_uncaught_errors(page_log)


def test_evaluation_report_page_shows_metrics_and_comparison(
    tour: Tour, platform_state: PlatformState, page_log: PageLog, screenshot_dir: Path
) -> None:
    tour.evaluation_report()
    tour.screenshot(screenshot_dir, "02-evaluation-report")

    page = tour.page
    rmse_row = page.locator("tr").filter(has=page.get_by_text("rmse", exact=True)).first
    assert for_people(platform_state.evaluation_rmse, DOLLARS) in rmse_row.inner_text()  # "$43,640.65"
    raw_row = page.locator("tr").filter(has=page.get_by_text("rmse_raw", exact=True)).first
    assert repr(platform_state.evaluation_rmse) in raw_row.inner_text()
    for metric in ("mae", "r2", "mape", "linear_baseline_rmse", "test_rows"):
        assert page.get_by_text(metric, exact=True).count() >= 1, metric
    comparison = page.locator("tr").filter(has=page.get_by_text("comparison", exact=True)).first
    for model in ("candidate (keras)", "linear_regression", "hist_gradient_boosting", "median_per_ocean_proximity"):
        assert model in comparison.inner_text(), f"{model} missing from the comparison table"
    # The description is rendered from the asset's docstring.
    assert page.get_by_text("How good the candidate is", exact=False).count() >= 1
    _assert_no_uncaught_errors(page_log)


def test_evaluation_plots_render_as_images(tour: Tour, page_log: PageLog, screenshot_dir: Path) -> None:
    dialog = tour.evaluation_plots()
    tour.screenshot(screenshot_dir, "03-evaluation-plots")

    images = dialog.locator("img")
    sizes = {images.nth(i).get_attribute("alt"): images.nth(i).evaluate("i => [i.naturalWidth, i.naturalHeight]")
             for i in range(images.count())}
    assert set(sizes) == {"Predicted vs actual", "Residuals", "Slice errors"}, sizes
    assert all(width >= 300 and height >= 300 for width, height in sizes.values()), sizes
    assert all(images.nth(i).get_attribute("src").startswith("data:image/png;base64,") for i in range(images.count()))
    tour.close_dialog()
    _assert_no_uncaught_errors(page_log)


def test_gate_checks_show_that_they_passed(
    tour: Tour, platform_state: PlatformState, page_log: PageLog, screenshot_dir: Path
) -> None:
    expected = platform_state.checks["evaluation_report"]
    assert set(expected) == set(GATE_CHECKS)  # every blocking gate check, the golden holdout's included
    text = tour.gate_checks()
    tour.screenshot(screenshot_dir, "04-gate-checks")

    shown = check_statuses(text, expected)
    assert shown == {name: "Succeeded" if passed else "Failed" for name, passed in expected.items()}
    assert "blocking" in text  # the detail panel says the selected check blocks downstream work
    _assert_no_uncaught_errors(page_log)


def test_drift_check_shows_that_it_failed(
    tour: Tour, platform_state: PlatformState, page_log: PageLog, screenshot_dir: Path
) -> None:
    assert platform_state.checks["drift_report"] == {"no_feature_drift": False}, "the shifted traffic should drift"
    text = tour.drift_check()
    tour.screenshot(screenshot_dir, "05-drift-check")

    assert check_statuses(text, ["no_feature_drift"]) == {"no_feature_drift": "Failed"}
    assert "median_income" in text  # the failure names the drifted key feature
    _assert_no_uncaught_errors(page_log)


def test_data_profile_page_shows_statistics_and_plots(tour: Tour, page_log: PageLog, screenshot_dir: Path) -> None:
    dialog = tour.profile_plots()
    tour.screenshot(screenshot_dir, "07-data-profile")

    images = dialog.locator("img")
    assert images.count() == 3
    assert all(images.nth(i).evaluate("i => i.naturalWidth") > 300 for i in range(images.count()))
    tour.close_dialog()
    page = tour.page
    assert page.get_by_text("strongest_feature", exact=True).count() >= 1
    assert page.locator("tr").filter(has=page.get_by_text("strongest_feature", exact=True)).first.inner_text().count(
        "median_income") == 1
    _assert_no_uncaught_errors(page_log)
