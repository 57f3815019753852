"""Debian's Chromium, driven through playwright, for the dashboard's browser tests.

Playwright's own browser download does not work offline; the tests use the system's
/usr/bin/chromium (Debian package `chromium`), headless, with a fresh profile each launch.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> Path:
    found = CHROMIUM if CHROMIUM.exists() else shutil.which("chromium")
    if not found:
        raise RuntimeError(
            "chromium is not installed: `make system` installs it (apt-get install chromium)"
        )
    return Path(found)


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium; closed when the block ends."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Tab:
    """A page and the script errors it raised so far (uncaught exceptions)."""

    page: Page
    errors: list[str] = field(default_factory=list)


@contextmanager
def tab(browser: Browser, width: int = 1280, height: int = 900) -> Iterator[Tab]:
    """A page in a browser context of its own (its own localStorage)."""
    context = browser.new_context(viewport={"width": width, "height": height}, locale="en-GB")
    opened = Tab(context.new_page())
    opened.page.on("pageerror", lambda exc: opened.errors.append(str(exc)))
    try:
        yield opened
    finally:
        context.close()
