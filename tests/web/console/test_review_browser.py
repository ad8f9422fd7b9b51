"""The review queue in a real browser (Debian's Chromium through Playwright): a reviewer works
through the queue with the keyboard — ``a`` accepts, ``c`` opens a suggestion to choose another
category from the ticket's valid ones — and the ConnectWise fake receives exactly one write for
each; a viewer cannot act. The pages are screenshotted for docs/console.md."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser

from psatriage.runtime import Runtime
from tests.harness import Harness
from tests.web.console.browser import Tab, open_tab, screenshot_folder, serving
from tests.web.console.conftest import PASSWORD
from tests.web.console.test_browser import browser  # noqa: F401 - the module's Chromium
from tests.web.console.test_review_pages import another_leaf, runtime, suggest  # noqa: F401

pytestmark = pytest.mark.slow


@pytest.fixture
def tab(
    browser: Browser,  # noqa: F811
    app: FastAPI,
    runtime: Runtime,  # noqa: F811
    people: object,
    tmp_path: Path,
) -> Iterator[Tab]:
    with serving(app) as base:
        opened = open_tab(browser, base, screenshot_folder(tmp_path))
        yield opened
        opened.page.context.close()
    assert opened.unexpected_errors() == []


def _signed_in(tab: Tab, name: str, path: str = "/reviews") -> None:
    tab.go(path)
    tab.sign_in(name, PASSWORD)
    tab.page.wait_for_url(re.compile(rf".*{path}$"))
    tab.page.wait_for_load_state("load")


def test_a_reviewer_accepts_and_corrects_with_the_keyboard(
    harness: Harness,
    runtime: Runtime,  # noqa: F811
    tab: Tab,
) -> None:
    first, first_review = suggest(harness, runtime, "Printer jams on floor 3")
    second, second_review = suggest(harness, runtime, "Printer out of toner")
    _signed_in(tab, "rob")
    assert tab.page.locator("li.review").count() == 2
    tab.screenshot("review-queue", full_page=True)
    # newest first: j moves to the first ticket's suggestion, a accepts it
    assert tab.page.locator("li.review.selected").get_attribute("data-review") == str(
        second_review.id
    )
    tab.page.keyboard.press("j")
    assert tab.page.locator("li.review.selected").get_attribute("data-review") == str(
        first_review.id
    )
    with tab.page.expect_navigation():
        tab.page.keyboard.press("a")
    assert f"Review {first_review.id} accepted" in tab.text()
    assert len(harness.cw.patches(first)) == 1
    assert harness.cw.patches(second) == []

    other = another_leaf(runtime, second, second_review)
    with tab.page.expect_navigation():
        tab.page.keyboard.press("c")
    tab.page.fill("input[name=category]", other.label)
    tab.screenshot("review-correct")
    with tab.page.expect_navigation():
        tab.page.click("form.correct-form button[type=submit]")
    assert f"Review {second_review.id} corrected: {other.label}" in tab.text()
    assert len(harness.cw.patches(second)) == 1
    closed = runtime.reviews.get(second_review.id)
    assert closed is not None and closed.state == "corrected" and closed.final_key == other.key
    assert "Nothing waits for review." in tab.text()
    assert len(harness.cw.patches(first)) == 1  # nothing written twice


def test_a_viewer_cannot_act_on_reviews(
    harness: Harness,
    runtime: Runtime,  # noqa: F811
    tab: Tab,
) -> None:
    ticket, _ = suggest(harness, runtime)
    _signed_in(tab, "val")
    assert tab.page.locator("li.review button.accept").is_disabled()
    assert "Only reviewers and admins may act on reviews." in tab.text()
    tab.page.keyboard.press("a")  # no shortcuts for a viewer: nothing happens
    assert harness.cw.patches(ticket) == []


def test_categories_page_in_the_browser(
    harness: Harness,
    runtime: Runtime,  # noqa: F811
    tab: Tab,
) -> None:
    suggest(harness, runtime)
    _signed_in(tab, "ann", "/categories")
    assert tab.page.locator("table.categories tbody tr[data-category]").count() == 1
    assert tab.page.locator("table.categories svg rect").count() == 8
    tab.screenshot("categories")
