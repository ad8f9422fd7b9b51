"""The console in a real browser: headless Chromium from Debian's packages, driven by Playwright,
against the app served on 127.0.0.1 over a seeded month of work. Every page is also
screenshotted (docs/console.md shows them). No test ends with an error in the browser's console.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser, Route, sync_playwright
from sqlalchemy import update

from psatriage.runtime import Runtime
from psatriage.store.tables import ConsoleSessionRow, EventState, utcnow
from psatriage.web import create_app
from psatriage.web.console.core import Console
from tests.fakes.oidc import CLIENT_ID, CLIENT_SECRET, FakeOidc
from tests.harness import TENANT, Harness
from tests.web.console.browser import (
    CHROMIUM,
    Tab,
    launch,
    open_tab,
    screenshot_folder,
    serving,
)
from tests.web.console.conftest import PASSWORD
from tests.web.console.seed import seed
from tests.web.console.test_pages import _decided, _failed

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        missing = f"no Chromium at {CHROMIUM}: apt-get install chromium (.ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    with sync_playwright() as playwright:
        launched = launch(playwright)
        yield launched
        launched.close()


@pytest.fixture
def month(harness: Harness, runtime: Runtime, people: object) -> Runtime:
    """A month of decisions and some failures, and two tickets the pipeline really decided."""
    seed(runtime.engine, tenants=(TENANT, "globex"), decisions=640, failures=5)
    _decided(harness, runtime)
    _decided(harness, runtime, title="Laptop")
    _failed(runtime, "77001", "gave up after 6 attempts: the model could not be reached (HTTP 503)")
    return runtime


@pytest.fixture
def base(app: FastAPI, month: Runtime, console: Console) -> Iterator[str]:
    for tenant in sorted(month.config.tenants):
        console.health.refresh(tenant)
    with serving(app) as url:
        yield url


@pytest.fixture
def tab(browser: Browser, base: str, tmp_path: Path) -> Iterator[Tab]:
    opened = open_tab(browser, base, screenshot_folder(tmp_path))
    yield opened
    opened.page.context.close()
    assert opened.unexpected_errors() == []


def _signed_in(tab: Tab, name: str = "ann", path: str = "/") -> None:
    tab.go(path)
    tab.sign_in(name, PASSWORD)
    tab.page.wait_for_url(
        re.compile(r".*" + re.escape(path.split("?", maxsplit=1)[0]) + r"(\?.*)?$")
    )


def test_sign_in_and_see_the_overview_with_its_charts(tab: Tab) -> None:
    tab.go("/")
    assert tab.page.url.endswith("/login?next=%2F")
    tab.screenshot("sign-in")
    tab.sign_in("ann", PASSWORD)
    tab.page.wait_for_selector("#cost-chart svg")
    bars = tab.page.locator("#cost-chart rect.bar")
    assert bars.count() == 30
    heights = [float(bars.nth(i).get_attribute("height") or 0) for i in range(30)]
    assert sum(1 for h in heights if h > 0) >= 25  # a month of calls, drawn
    assert tab.page.locator("#tokens-chart rect.bar").count() == 30
    text = tab.text()
    assert "ann ADMIN" in text and "reachable" in text and "applied" in text
    assert re.search(r"\d{3} last 30 days", text)
    tab.screenshot("overview", full_page=True)


def test_a_wrong_password_and_an_unknown_user_read_the_same(tab: Tab, console: Console) -> None:
    tab.expected = {401, 429}
    tab.go("/login")
    tab.sign_in("ann", "not the password")
    wrong = tab.page.inner_text(".error")
    tab.sign_in("nobody-here", "not the password")
    assert tab.page.inner_text(".error") == wrong == "Wrong user name or password."
    for _ in range(console.settings.sign_in_attempts):
        tab.sign_in("val", "still guessing")
        assert tab.page.inner_text(".error") == wrong
    tab.sign_in("val", PASSWORD)  # the right password, too late
    assert "Too many failed sign-ins. Wait 15 minutes" in tab.page.inner_text(".error")


def test_filter_decisions_and_open_one(tab: Tab, month: Runtime) -> None:
    _signed_in(tab, path="/decisions")
    assert tab.page.locator("table.decisions tbody tr").count() == 50
    tab.screenshot("decisions", full_page=False)
    tab.page.select_option("select[name=tenant]", TENANT)
    tab.page.fill("input[name=category]", "printer")
    tab.page.select_option("select[name=outcome]", "applied")
    tab.page.click("form.filters button[type=submit]")
    tab.page.wait_for_url(re.compile(r".*tenant=acme.*category=printer.*outcome=applied"))
    rows = tab.page.locator("table.decisions tbody tr")
    assert rows.count() > 0
    for i in range(rows.count()):
        cells = rows.nth(i).inner_text()
        assert TENANT in cells and "Printer" in cells and "applied" in cells
    newest = month.decisions.search_decisions(tenant=TENANT, limit=1)[0]
    rows.first.locator("a").click()
    tab.page.wait_for_url(f"**/decisions/{newest.id}")
    text = tab.text()
    assert "Hardware › Printer › Paper jam" in text and "The note" in text
    assert "psatriage categorized this ticket" in tab.page.inner_text("pre.note")
    assert "Open the ticket in the PSA" in text and "prompt hash" in text
    tab.screenshot("decision", full_page=True)


def test_an_admin_retries_a_failed_event(tab: Tab, month: Runtime) -> None:
    _signed_in(tab, path="/events")
    rows = tab.page.locator("table.events tbody tr")
    failed = rows.count()
    assert failed == 6
    tab.screenshot("events", full_page=True)
    event_id = int(rows.first.get_attribute("data-event") or 0)
    rows.first.locator("button").click()
    tab.page.wait_for_url("**/events?retried=1")
    assert "Queued again: 1 event(s)" in tab.text()
    assert tab.page.locator("table.events tbody tr").count() == failed - 1
    event = month.ledger.get(event_id)
    assert event is not None and event.state == EventState.RECEIVED.value


def test_a_viewer_cannot_retry(tab: Tab, month: Runtime) -> None:
    tab.expected = {403}
    _signed_in(tab, "val", "/events")
    button = tab.page.locator("table.events tbody tr button").first
    assert button.is_disabled()
    event_id = int(tab.page.locator("table.events tbody tr").first.get_attribute("data-event") or 0)
    button.evaluate("b => b.disabled = false")  # as if the page had been tampered with
    button.click()
    tab.page.wait_for_selector("section.problem")
    assert "Only admins and above may retry events" in tab.text()
    event = month.ledger.get(event_id)
    assert event is not None and event.state in {"failed", "parked"}


def test_a_post_without_the_csrf_token_is_refused(tab: Tab) -> None:
    tab.expected = {403}
    _signed_in(tab, path="/events")
    status = tab.page.evaluate(
        """async () => {
            const body = new URLSearchParams({event_id: "1"});
            const answer = await fetch("/events/retry", {method: "POST", body});
            return answer.status;
        }"""
    )
    assert status == 403


def test_an_expired_session_returns_to_the_page_after_sign_in(tab: Tab, console: Console) -> None:
    _signed_in(tab)
    with console.runtime.sessions.begin() as session:
        session.execute(
            update(ConsoleSessionRow).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    tab.go("/decisions?tenant=acme&outcome=applied")
    tab.page.wait_for_url("**/login?**")
    assert "Your session ended" in tab.text()
    tab.sign_in("ann", PASSWORD)
    tab.page.wait_for_url("**/decisions?tenant=acme&outcome=applied")
    assert tab.page.locator("select[name=outcome]").input_value() == "applied"


def test_what_does_not_exist_is_a_404_page(tab: Tab) -> None:
    tab.expected = {404}
    _signed_in(tab)
    tab.go("/decisions/999999")
    assert "Not found 404" in tab.text() and "There is no decision 999999." in tab.text()
    tab.go("/tenants/nope")
    assert "There is no tenant named 'nope'." in tab.text()
    tab.screenshot("not-found")


def test_tenants_with_their_checks_and_masked_secrets(tab: Tab, harness: Harness) -> None:
    _signed_in(tab, path="/tenants")
    assert "acme connectwise webhook openai apply ok ok" in tab.text()
    tab.screenshot("tenants")
    tab.page.click("text=acme")
    tab.page.wait_for_url("**/tenants/acme")
    text = tab.text()
    assert "•••••• (set)" in text and "PSA ok" in text
    assert not any(secret in tab.page.content() for secret in harness.env.values())
    tab.screenshot("tenant")


def test_the_api_docs_load_with_no_internet(tab: Tab) -> None:
    outside: list[str] = []

    def only_local(route: Route) -> None:
        if route.request.url.startswith(tab.base):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    tab.page.route("**/*", only_local)
    tab.go("/docs")
    tab.page.wait_for_selector('.opblock-summary-path[data-path="/api/events"]')
    assert outside == []
    assert tab.page.locator(".opblock").count() >= 5


def test_sign_in_with_single_sign_on(
    browser: Browser,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    with FakeOidc() as oidc:
        monkeypatch.setenv("PSATRIAGE_OIDC_ISSUER", oidc.issuer)
        monkeypatch.setenv("PSATRIAGE_OIDC_CLIENT_ID", CLIENT_ID)
        monkeypatch.setenv("PSATRIAGE_OIDC_CLIENT_SECRET", CLIENT_SECRET)
        monkeypatch.setenv("PSATRIAGE_OIDC_DISPLAY_NAME", "Microsoft")
        with serving(create_app(runtime)) as url:
            tab = open_tab(browser, url, screenshot_folder(tmp_path))
            tab.go("/decisions")
            tab.page.click("text=Sign in with Microsoft")
            tab.page.wait_for_url(f"{url}/decisions")
            assert "alex@contoso.example REVIEWER" in tab.text()
            tab.page.context.close()
            assert tab.unexpected_errors() == []
