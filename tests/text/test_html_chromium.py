"""Sanitized HTML in a real browser: nothing runs, nothing loads, nothing navigates.

Each hostile input of tests/text/test_html.py is sanitized and loaded into Chromium; every
element is clicked. A script that runs (a dialog), a network request (any URL at all) or a
navigation fails the test. The raw inputs go through the same harness first, to show it can
fail.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.sanitizers.html import sanitize_html
from gateway.sanitizers.urls import UrlPolicy
from tests.text.test_html import HOSTILE, NEWSLETTER

pytestmark = [
    pytest.mark.chromium,
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="chromium is not installed"),
]

# Raw inputs that, unsanitized, must trip the harness (a dialog or a request).
TRIPS = ["event-handler", "svg-onload", "iframe", "remote-image", "link-css", "body-onload"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox"]
        )
        yield launched
        launched.close()


def _activity(browser: Any, markup: str) -> list[str]:
    """Everything the page did on its own or when clicked: dialogs, requests, navigations."""
    context = browser.new_context(java_script_enabled=True)
    page = context.new_page()
    seen: list[str] = []
    page.on("dialog", lambda dialog: (seen.append(f"dialog {dialog.message}"), dialog.dismiss()))

    def record(route: Any) -> None:
        seen.append(f"request {route.request.url}")
        route.abort()

    page.route("**/*", record)
    page.set_content(f"<!doctype html><html><body>{markup}</body></html>")
    page.wait_for_timeout(150)
    for element in page.query_selector_all("body *"):
        # An element that cannot be clicked (hidden, detached) is fine: nothing to trigger.
        with contextlib.suppress(Exception):
            element.click(timeout=200, force=True, no_wait_after=True)
    page.wait_for_timeout(150)
    if page.url != "about:blank":
        seen.append(f"navigated {page.url}")
    context.close()
    return seen


@pytest.mark.parametrize("name", TRIPS)
def test_harness_catches_the_raw_input(browser: Any, name: str) -> None:
    assert _activity(browser, HOSTILE[name]) != []


@pytest.mark.parametrize(
    "markup", [*HOSTILE.values(), NEWSLETTER], ids=[*HOSTILE.keys(), "newsletter"]
)
def test_sanitized_html_is_inert_in_chromium(browser: Any, markup: str) -> None:
    sanitized = sanitize_html(markup, UrlPolicy()).text
    assert _activity(browser, sanitized) == []
