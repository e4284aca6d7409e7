"""Browser tests: a real platform state, the real Dagster webserver on it, and headless Chromium.

One state per session (about a minute to build): the graph is materialized into a file-backed
Dagster instance in a temporary folder, a model server answers a day of shifted traffic with
feedback, and monitoring runs on it. `dagster-webserver` is then started on that same instance (it
is a separate process, which is why the instance lives on disk). Chromium is Debian's
(`/usr/bin/chromium`), driven by Playwright for Python; nothing is downloaded at run time.

:class:`Tour` holds the pages of `docs/tour.md`. The tests open them and assert on what they show;
`scripts/screenshots.py` (`make screenshots`) opens the same pages through :func:`take_tour` to
refresh `docs/images/`, so the documentation shows exactly what the tests check.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from housing_platform.config.settings import PROJECT_ROOT, HousingSettings

SCREENSHOT_DIR = PROJECT_ROOT / "test-artifacts" / "screenshots"
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
SMALL_TRAINING = {
    "ops": {"trained_model": {"config": {"epochs": 3}}},
    "loggers": {"console": {"config": {"log_level": "WARNING"}}},
}
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
# Shifted incomes: the drift check fails while the evaluation gate passed, so the pages show both.
TRAFFIC_SCENARIO = "income_shift"
TRAFFIC_ROWS = 600
# Variables that would point the state somewhere else than the temporary folder.
FOREIGN_STATE_VARIABLES = (
    "MLFLOW_TRACKING_URI", "HOUSING_CAPTURE_URL", "HOUSING_DATA_PATH", "HOUSING_MLFLOW_ARTIFACT_ROOT",
    "HOUSING_HOME", "DAGSTER_HOME",
)


def chromium_executable() -> str | None:
    """Debian's Chromium, or None when it is not installed (the only reason the browser tests skip)."""
    return shutil.which("chromium")


@contextmanager
def platform_environment(home: Path) -> Iterator[HousingSettings]:
    """Point HOUSING_HOME and DAGSTER_HOME at ``home`` while the block runs; restore the environment after."""
    saved = dict(os.environ)
    try:
        for name in FOREIGN_STATE_VARIABLES:
            os.environ.pop(name, None)
        os.environ["HOUSING_HOME"] = str(home)
        settings = HousingSettings.from_env()
        os.environ["DAGSTER_HOME"] = str(settings.ensure_dagster_home())
        yield settings
    finally:
        os.environ.clear()
        os.environ.update(saved)


@dataclass
class PlatformState:
    """What :func:`build_platform_state` produced, hence what the pages must show."""

    settings: HousingSettings
    partition_key: str
    asset_keys: list[str]
    group_names: list[str]
    checks: dict[str, dict[str, bool]]  # asset key → {check name: passed} for every check evaluated
    evaluation_rmse: float
    drift_table: list[dict]  # the drift_report value: column, method, score, threshold, drifted
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def dagster_home(self) -> Path:
        return self.settings.dagster_home

    @property
    def drift_html(self) -> Path:
        return self.settings.reports_dir / "drift" / f"{self.partition_key}.html"


def build_platform_state(settings: HousingSettings, traffic_rows: int = TRAFFIC_ROWS) -> PlatformState:
    """Train (3 epochs) and register, serve shifted traffic with feedback, and monitor today.

    Call it inside :func:`platform_environment`. Raises when training does not register a champion,
    since nothing after it would mean anything.
    """
    import dagster as dg

    from housing_platform.devtools import loop
    from housing_platform.defs.definitions import build_definitions
    from housing_platform.defs.sensors import today_partition_key
    from housing_platform.devtools.simulator import simulate

    seconds: dict[str, float] = {}
    started = time.perf_counter()
    defs = build_definitions(settings)
    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        training = loop.train(defs, instance, SMALL_TRAINING, tags={"housing_platform/trigger": "browser tests"})
        if not training.success:
            failed = [name for name, e in loop.check_results(training).items() if not e.passed]
            raise RuntimeError(f"training did not register a model (failed checks: {failed or 'none'})")
        seconds["train"] = time.perf_counter() - started

        mark = time.perf_counter()
        with loop.ModelServer(settings, poll_interval_seconds=5.0) as server:
            traffic = simulate(server.url, TRAFFIC_SCENARIO, traffic_rows, data_path=settings.data_path,
                               feedback=True, seed=1)
        if traffic.failed_requests:
            raise RuntimeError(f"traffic to the model server failed: {traffic.errors[:3]}")
        seconds["serve"] = time.perf_counter() - mark

        mark = time.perf_counter()
        partition_key = today_partition_key()
        monitored = loop.monitor(defs, instance, partition_key, run_config=QUIET_LOGS)
        seconds["monitor"] = time.perf_counter() - mark

        checks: dict[str, dict[str, bool]] = {}
        for result in (training, monitored):
            for evaluation in result.get_asset_check_evaluations():
                checks.setdefault(evaluation.asset_key.to_user_string(), {})[evaluation.check_name] = evaluation.passed
        graph = defs.resolve_asset_graph()
        keys = sorted(key.to_user_string() for key in graph.get_all_asset_keys())
        groups = sorted({graph.get(key).group_name for key in graph.get_all_asset_keys()})
        report = defs.load_asset_value("evaluation_report", instance=instance)
        drift_table = defs.load_asset_value("drift_report", partition_key=partition_key, instance=instance)
    return PlatformState(
        settings=settings,
        partition_key=partition_key,
        asset_keys=keys,
        group_names=groups,
        checks=checks,
        evaluation_rmse=float(report["metrics"]["rmse"]),
        drift_table=drift_table.to_dict("records"),
        seconds=seconds,
    )


class DagsterWebserver:
    """`dagster-webserver -m housing_platform.defs.definitions` on a free loopback port, serving ``settings``' instance."""

    def __init__(self, settings: HousingSettings, port: int | None = None, log_path: Path | None = None):
        from housing_platform.devtools.loop import free_port

        self.settings = settings
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or settings.home / "logs" / f"webserver-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "DagsterWebserver":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {name: value for name, value in os.environ.items() if name not in FOREIGN_STATE_VARIABLES}
        env |= {
            "DAGSTER_HOME": str(self.settings.dagster_home),
            "HOUSING_HOME": str(self.settings.home),
            "HOUSING_DATA_PATH": str(self.settings.data_path),
        }
        command = [
            str(Path(sys.executable).parent / "dagster-webserver"),
            "-m", "housing_platform.defs.definitions", "-h", "127.0.0.1", "-p", str(self.port),
        ]
        self._log = self.log_path.open("ab")
        # A process group of its own: the webserver starts a code-server child that must stop with it.
        self.process = subprocess.Popen(command, env=env, cwd=PROJECT_ROOT, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self.wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def wait_ready(self, timeout_seconds: float = 240.0) -> None:
        """Until the server answers GraphQL and the code location is loaded without error."""
        import httpx

        query = ("{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
                 "locationOrLoadError { __typename ... on PythonError { message } } } } } }")
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dagster-webserver exited with {self.process.returncode}; see {self.log_path}")
            try:
                response = httpx.post(f"{self.url}/graphql", json={"query": query}, timeout=10.0)
                entries = response.json()["data"]["workspaceOrError"]["locationEntries"]
            except (httpx.TransportError, KeyError, TypeError, ValueError):
                entries = None
            if entries and all(entry["loadStatus"] == "LOADED" for entry in entries):
                errors = [e for e in entries if e["locationOrLoadError"]["__typename"] != "RepositoryLocation"]
                if errors:
                    raise RuntimeError(f"the code location failed to load: {errors}; see {self.log_path}")
                return
            time.sleep(0.5)
        raise TimeoutError(f"dagster-webserver was not ready within {timeout_seconds:.0f} s; see {self.log_path}")

    def __exit__(self, *exc) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        finally:
            self._log.close()
            self.process = None


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
        """The evaluation report's Checks tab: the four blocking gate checks; returns the page text."""
        names = sorted(self.state.checks.get("evaluation_report", {}))
        self.asset("evaluation_report", view="checks", text=names[-1])
        return self.page.inner_text("body")

    def drift_check(self) -> str:
        """The drift report's Checks tab: `no_feature_drift`, failed on the shifted traffic; returns the page text."""
        self.asset("drift_report", view="checks", text="no_feature_drift")
        self.page.get_by_text("Evaluation result", exact=True).first.wait_for()
        return self.page.inner_text("body")

    def profile_plots(self):
        self.asset("housing_data_profile", text="statistics")
        return self.markdown_metadata("plots")

    def drift_html(self) -> None:
        """The Evidently HTML report of the day, opened from disk, scrolled to the per-column table."""
        self._open(self.state.drift_html.as_uri(), "Data Drift Summary")
        self.page.get_by_text("Drift Score", exact=True).first.wait_for()
        self.page.get_by_text("Dataset Drift", exact=True).first.scroll_into_view_if_needed()

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


def take_tour(page, base_url: str, state: PlatformState, directory: Path) -> list[Path]:
    """Open every page of the tour in order and save a screenshot of each into ``directory``."""
    tour = Tour(page, base_url, state)
    paths = []
    for name, stop in TOUR_STOPS:
        getattr(tour, stop)()
        paths.append(tour.screenshot(directory, name))
        if page.get_by_role("dialog").count():
            tour.close_dialog()
    return paths


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
