"""Browser fixtures: a live Gatehouse server in a thread and Debian's Chromium driven by
Playwright. Playwright never downloads a browser here: it is pointed at /usr/bin/chromium."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


TIMEOUT = 10_000  # ms, for every expect()
# Records CSP violations in the page itself (init scripts are not subject to the CSP).
CSP_WATCH = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push(
    e.violatedDirective + " " + (e.blockedURI || "inline") + " at " + (e.sourceFile || "?") + ":" + e.lineNumber
    + (e.sample ? " (" + e.sample + ")" : "")
  );
});
"""


def snap(page, name: str) -> None:
    """Keep a full-page screenshot when GATEHOUSE_SCREENSHOT_DIR is set.

    ``caret="initial"``: hiding the caret leaves ``style=""`` on inputs, which htmx copies
    onto swapped-in elements with the same id, a (test-made) ``style-src-attr`` violation."""
    directory = os.environ.get("GATEHOUSE_SCREENSHOT_DIR")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(directory) / f"{name}.png"), full_page=True, caret="initial")


class ConsoleWatch:
    """Collects console errors, uncaught page errors and CSP violations of a page.

    ``expected_statuses``: HTTP statuses the test provokes on purpose (a 422 form answer);
    Chromium logs each as "Failed to load resource", which is not a page error."""

    def __init__(self, page, expected_statuses: tuple[int, ...] = ()):
        self.page = page
        self.errors: list[str] = []
        self.expected = tuple(f"Failed to load resource: the server responded with a status of {s} " for s in expected_statuses) + tuple(
            f"Response Status Error Code {s} from" for s in expected_statuses  # htmx's own log line for the same answer
        )
        page.add_init_script(CSP_WATCH)
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))

    def _on_console(self, msg) -> None:
        if msg.type == "error" and not msg.text.startswith(self.expected):
            self.errors.append(f"console: {msg.text} ({msg.location.get('url', '')})")

    def assert_clean(self) -> None:
        """No console error, no uncaught exception, no CSP violation on the current document."""
        violations = self.page.evaluate("window.__cspViolations || []")
        assert violations == [], f"CSP violations: {violations}"
        assert self.errors == [], f"browser errors: {self.errors}"


def mark_document(page) -> None:
    """Set a marker on ``window``: it survives HTMX swaps, not a full page load."""
    page.evaluate("window.__gatehouseMarker = 'still-here'")


def assert_same_document(page) -> None:
    assert page.evaluate("window.__gatehouseMarker") == "still-here", "the page was reloaded"


def assert_fits(page) -> None:
    """The styled page is no wider than the viewport (nothing scrolls sideways)."""
    page.wait_for_load_state("load")  # measure the styled page, not one whose CSS is still loading
    assert page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"], \
        "the page scrolls sideways"


def chromium_path() -> str:
    """Debian's Chromium, or a clear failure naming the command that installs it."""
    path = os.environ.get("GATEHOUSE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail("chromium is not installed: run `make test` (it installs it) or apt-get install chromium", pytrace=False)
    return path


class LiveServer:
    """A Gatehouse app served by werkzeug on a free loopback port, in a thread."""

    def __init__(self, app):
        self.app = app
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="live-server", daemon=True)

    def start(self):
        """Serve in the background."""
        self.thread.start()
        return self

    def stop(self):
        """Stop serving and wait for the thread."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def live_server(dev_app):
    """The development app (dev inbox on) served on a free port."""
    server = LiveServer(dev_app).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the session."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield instance
        instance.close()


@pytest.fixture
def page(browser, request):
    """A fresh browser page; a screenshot is kept in test-artifacts/ when the test fails."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(10_000)
    yield tab
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        tab.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Remember each phase's report on the test item (for the failure screenshot)."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
