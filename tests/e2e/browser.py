"""One headless Chromium page for the end-to-end tests, recording what leaves the server."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
TIMEOUT_MS = 60_000


@dataclass
class Browser:
    """A Chromium page, every request it began outside the server's origin, and those of them
    the page's Content-Security-Policy stopped before they left the browser."""

    page: Any
    attempted: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)

    @property
    def outside(self) -> list[str]:
        """Return the requests that left for somewhere other than the server."""
        return [url for url in self.attempted if url not in self.blocked]


@contextlib.contextmanager
def chromium_page(executable: str, origin: str) -> Iterator[Browser]:
    """Yield a fresh Chromium page (downloads accepted) that records every request leaving
    `origin`; the browser is closed after."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = chromium.new_context(accept_downloads=True).new_page()
            page.set_default_timeout(TIMEOUT_MS)
            result = Browser(page)
            page.on(
                "request",
                lambda request: (
                    None
                    if request.url.startswith((origin, "data:", "blob:"))
                    else result.attempted.append(request.url)
                ),
            )
            page.on(
                "requestfailed",
                lambda request: (
                    result.blocked.append(request.url) if request.failure == "csp" else None
                ),
            )
            yield result
        finally:
            chromium.close()
