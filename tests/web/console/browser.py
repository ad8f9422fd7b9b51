"""What the browser tests need: the app served by uvicorn on 127.0.0.1 in a thread, Debian's
Chromium driven by Playwright (never a downloaded browser), and a page that records every error
the browser reports.

Chromium runs headless as root with a fresh profile and no background networking (this machine
has no internet). ``PSATRIAGE_TEST_CHROMIUM`` points at another Chromium binary;
``PSATRIAGE_CONSOLE_SCREENSHOTS`` at a folder for the screenshots (``docs/console`` to refresh
the documentation's), which otherwise go to the test's temporary folder.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, Request

CHROMIUM = Path(os.environ.get("PSATRIAGE_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
_SCREENSHOTS = os.environ.get("PSATRIAGE_CONSOLE_SCREENSHOTS", "")
# resolved at import, from where pytest started: each test runs in a directory of its own
SCREENSHOTS = str(Path(_SCREENSHOTS).resolve()) if _SCREENSHOTS else ""
MAX_SCREENSHOT_BYTES = 150_000
READY_SECONDS = 120


def launch(playwright: Playwright) -> Browser:
    """Headless Chromium from the system; Playwright gives it a new, empty profile."""
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM),
        headless=True,
        chromium_sandbox=False,  # --no-sandbox: the tests run as root
        args=CHROMIUM_ARGS,
    )


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free port of 127.0.0.1; yields its base URL."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, name="console-under-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + READY_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise AssertionError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@dataclass
class Tab:
    """A browser page on the console, with every error the browser reported on it."""

    page: Page
    base: str
    shots: Path
    errors: list[str] = field(default_factory=list)
    expected: set[int] = field(default_factory=set)  # statuses a test asks for on purpose

    def go(self, path: str) -> Page:
        self.page.goto(self.base + path)
        return self.page

    def text(self) -> str:
        return re.sub(r"\s+", " ", self.page.inner_text("body"))  # as shown: CSS applied

    def sign_in(self, name: str, password: str) -> None:
        self.page.fill("input[name=name]", name)
        self.page.fill("input[name=password]", password)
        with self.page.expect_navigation():
            self.page.click("form[action='/login'] button[type=submit]")

    def screenshot(self, name: str, *, full_page: bool = False) -> Path:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        assert path.stat().st_size <= MAX_SCREENSHOT_BYTES, f"{name}.png is too large"
        return path

    def unexpected_errors(self) -> list[str]:
        allowed = [f"status of {status}" for status in self.expected]
        return [e for e in self.errors if not any(a in e for a in allowed)]


def open_tab(browser: Browser, base: str, shots: Path) -> Tab:
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    page = context.new_page()
    tab = Tab(page, base, shots)

    def console(message: ConsoleMessage) -> None:
        if message.type in {"error", "warning"}:
            tab.errors.append(f"{message.type}: {message.text}")

    page.on("console", console)
    page.on("pageerror", lambda error: tab.errors.append(f"page error: {error}"))
    page.on("requestfailed", lambda request: _failed(tab, request))
    return tab


def _failed(tab: Tab, request: Request) -> None:
    """A request that did not complete, unless the browser cancelled it itself because the page
    moved on (``net::ERR_ABORTED``: a favicon still loading when a form is sent, say)."""
    if request.failure != "net::ERR_ABORTED":
        tab.errors.append(f"failed: {request.url} ({request.failure})")


def screenshot_folder(tmp_path: Path) -> Path:
    folder = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
