"""The UI tour in headless Chromium: the pages of ``docs/tour.md``, checked by tests and screenshotted.

Debian's Chromium driven by Playwright (never a downloaded browser). :class:`Tour` opens each page of
the tour against a running Dagster webserver and a :class:`~housing_platform.devtools.platform_state.PlatformState`;
the browser tests assert what the pages show and ``make screenshots`` saves them as images.
"""

from __future__ import annotations

import re
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from housing_platform.devtools.platform_state import PlatformState

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # CI containers run as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-background-networking",  # there is no network: no update, sync or metrics pings
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1600, "height": 1000}
# The first page load makes the webserver build its workspace snapshot: generous timeouts on 2 cores.
PAGE_TIMEOUT_MS = 90_000
SETTLE_TIMEOUT_MS = 15_000
def chromium_executable() -> str | None:
    """Debian's Chromium, or None when it is not installed (the only reason the browser tests skip)."""
    return shutil.which("chromium")


@contextmanager
def chromium_browser(executable: str | None = None):
    """Headless Debian Chromium through Playwright (never a downloaded browser)."""
    from playwright.sync_api import sync_playwright

    executable = executable or chromium_executable()
    if executable is None:
        raise RuntimeError("Chromium is not installed: apt-get install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class PageLog:
    """What a page reported: console messages (type, text), uncaught errors, and every URL it requested."""

    console: list[tuple[str, str]] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    @property
    def console_errors(self) -> list[str]:
        return [text for kind, text in self.console if kind == "error"]

    def clear(self) -> None:
        self.console.clear()
        self.page_errors.clear()
        self.requests.clear()


def new_page(browser, log: PageLog | None = None):
    """A page with the tour's viewport and timeouts, reporting into ``log``."""
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    if log is not None:
        page.on("console", lambda message: log.console.append((message.type, message.text)))
        page.on("pageerror", lambda error: log.page_errors.append(str(error)))
        page.on("request", lambda request: log.requests.append(request.url))
    return page


def graph_label_matches(label: str, key: str) -> bool:
    """Whether a lineage node label shows ``key``: in full, or middle-truncated (`registere…_version`)."""
    if label == key:
        return True
    head, ellipsis, tail = label.partition("…")
    return bool(ellipsis) and len(head) + len(tail) < len(key) and key.startswith(head) and key.endswith(tail)


def check_statuses(text: str, check_names) -> dict[str, str]:
    """``{check name: "Succeeded" | "Failed" | …}`` as listed on an asset's Checks tab (its visible text)."""
    statuses = {}
    for name in check_names:
        found = re.search(rf"\b{re.escape(name)}\s+(?:{re.escape(name)}\s+)?(Succeeded|Failed|Skipped|Not evaluated|\w+)",
                          text)
        statuses[name] = found.group(1) if found else "not shown"
    return statuses


class Tour:
    """The pages of `docs/tour.md`, in order. Each method opens one and waits until it shows what the tour describes."""

    def __init__(self, page, base_url: str, state: PlatformState):
        self.page, self.base_url, self.state = page, base_url.rstrip("/"), state

    def _open(self, path_or_url: str, text: str) -> None:
        url = path_or_url if "://" in path_or_url else f"{self.base_url}{path_or_url}"
        self.page.goto(url, wait_until="domcontentloaded")
        self.page.get_by_text(text, exact=True).first.wait_for(state="visible")
        self._settle()

    def _settle(self) -> None:
        # The UI polls for fresh data every few seconds, so "network idle" may never come: best effort.
        try:
            self.page.wait_for_load_state("networkidle", timeout=SETTLE_TIMEOUT_MS)
        except Exception:  # playwright's TimeoutError: the page is shown, just never fully quiet
            pass

    def global_lineage(self) -> list[str]:
        """Lineage, every group expanded in the graph and in the sidebar; returns the graph's node labels."""
        page = self.page
        self._open("/asset-groups", "Global asset lineage")
        page.get_by_role("button", name=self.state.group_names[0]).first.wait_for()
        # With several groups the graph starts collapsed to one box per group.
        page.get_by_role("button", name="settings", exact=True).click()
        page.get_by_role("menuitem", name=re.compile("Expand all groups")).click()
        page.keyboard.press("Escape")
        # The sidebar tree's group rows come first, each after its expand arrow; expanding from the
        # last one keeps the indices of the others.
        arrows = page.get_by_role("button", name="arrow_drop_down")
        for index in reversed(range(len(self.state.group_names))):
            arrows.nth(index).click()
        page.get_by_role("button", name=re.compile(rf"\b{self.state.asset_keys[-1]}\b")).first.wait_for()
        # No tree row left highlighted by the pointer or the keyboard focus.
        page.mouse.move(VIEWPORT["width"] // 2, 10)
        page.evaluate("() => document.activeElement && document.activeElement.blur()")
        self._settle()
        graph = page.locator("svg", has=page.locator("foreignObject")).first
        graph.get_by_text(self.state.asset_keys[0], exact=True).first.wait_for()
        texts = graph.locator("foreignObject > *").all_inner_texts()
        return [line.strip() for text in texts for line in text.splitlines() if line.strip()]

    def asset(self, key: str, view: str | None = None, text: str | None = None) -> None:
        """An asset's page (`view`: None for the overview, or "events", "checks", "partitions", "lineage")."""
        self._open(f"/assets/{key}" + (f"?view={view}" if view else ""), text or key)

    def evaluation_report(self) -> None:
        """The evaluation report's overview, scrolled to its metadata: RMSE & co. and the comparison table."""
        self.asset("evaluation_report", text="comparison")
        self.page.get_by_text("candidate (keras)").first.wait_for()
        self.page.get_by_text("Metadata", exact=True).first.evaluate("e => e.scrollIntoView({block: 'start'})")

    def markdown_metadata(self, key: str):
        """Open a long markdown metadata entry (shown as "[Show Markdown]") and wait for its images."""
        row = self.page.locator("tr").filter(has=self.page.get_by_text(key, exact=True)).first
        row.get_by_text("[Show Markdown]").click()
        dialog = self.page.get_by_role("dialog")
        dialog.get_by_text(key, exact=True).first.wait_for()
        images = dialog.locator("img")
        for index in range(images.count()):
            images.nth(index).scroll_into_view_if_needed()
            self.page.wait_for_function("image => image.complete", arg=images.nth(index).element_handle())
        dialog.locator("h3, h2, h1").first.scroll_into_view_if_needed()
        return dialog

    def close_dialog(self) -> None:
        self.page.keyboard.press("Escape")
        self.page.get_by_role("dialog").wait_for(state="hidden")

    def evaluation_plots(self):
        self.evaluation_report()
        return self.markdown_metadata("plots")

    def gate_checks(self) -> str:
        """The evaluation report's Checks tab: the five blocking gate checks; returns the page text."""
        names = sorted(self.state.checks.get("evaluation_report", {}))
        self.asset("evaluation_report", view="checks", text=names[-1])
        return self.page.inner_text("body")

    def drift_check(self) -> str:
        """The drift report's Checks tab: `no_feature_drift`, failed on the shifted traffic; returns the page text."""
        self.asset("drift_report", view="checks", text="no_feature_drift")
        self.page.get_by_text("Evaluation result", exact=True).first.wait_for()
        return self.page.inner_text("body")

    def drift_metadata(self):
        """The drift report's overview, its `platform_verdict` metadata opened: the same words as the HTML."""
        self.asset("drift_report", text="platform_verdict")
        return self.markdown_metadata("platform_verdict")

    def profile_plots(self):
        self.asset("housing_data_profile", text="statistics")
        return self.markdown_metadata("plots")

    def drift_html(self) -> None:
        """The day's drift HTML, opened from disk: the platform's verdict first, then Evidently's per-column table."""
        self.drift_page(self.state.drift_html)
        self.page.get_by_text("Drift Score", exact=True).first.wait_for()
        self.page.locator("#platform-verdict").scroll_into_view_if_needed()

    def drift_page(self, path: Path) -> str:
        """Open a drift HTML page from disk and return its first heading (the platform's verdict)."""
        self._open(path.as_uri(), "Data Drift Summary")
        return self.page.locator("h1").first.inner_text()

    def drift_history_html(self) -> None:
        """The standalone drift history page: the figure, then the days with what followed each failed one."""
        self._open(self.state.drift_history_html.as_uri(), "what followed")
        self.page.wait_for_function("() => [...document.images].every(i => i.complete && i.naturalWidth > 0)")

    def drift_history(self):
        """`drift_history` in the UI: its image of the last days, opened from the metadata."""
        self.asset("drift_history", text="failed_days")
        return self.markdown_metadata("history")

    def screenshot(self, directory: Path, name: str) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{name}.png"
        self.page.screenshot(path=str(path))
        return path


# The tour of docs/tour.md: (image name, Tour method). `make screenshots` writes docs/images/<name>.png.
TOUR_STOPS = (
    ("01-global-lineage", "global_lineage"),
    ("02-evaluation-report", "evaluation_report"),
    ("03-evaluation-plots", "evaluation_plots"),
    ("04-gate-checks", "gate_checks"),
    ("05-drift-check", "drift_check"),
    ("06-drift-report-html", "drift_html"),
    ("07-data-profile", "profile_plots"),
)
# The analyst's guide (docs/analyst-guide.md): `scripts/screenshots.py --analyst` writes docs/images/<name>.png.
ANALYST_STOPS = (
    ("analyst-01-day-verdict", "drift_html"),
    ("analyst-02-drift-metadata", "drift_metadata"),
    ("analyst-03-history-ui", "drift_history"),
    ("analyst-04-history-page", "drift_history_html"),
)


def take_tour(page, base_url: str, state: PlatformState, directory: Path, stops=TOUR_STOPS) -> list[Path]:
    """Open every page of the tour (or of ``stops``) in order and save a screenshot of each into ``directory``."""
    tour = Tour(page, base_url, state)
    paths = []
    for name, stop in stops:
        getattr(tour, stop)()
        paths.append(tour.screenshot(directory, name))
        if page.get_by_role("dialog").count():
            tour.close_dialog()
    return paths


