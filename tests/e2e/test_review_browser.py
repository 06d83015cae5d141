"""A moderator works through the review queue in a real headless Chromium, against a real
`toxiguard serve` process with API keys set: the decision reaches the feedback store and live
quality."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from tests.e2e.browser import TIMEOUT_MS, Browser, chromium_page
from tests.e2e.test_ui_browser import COMMENT
from tests.integration.services import ServerProcess, start_server, train_demo_champion
from tests.processes import stop_process
from toxiguard.labels import LABELS
from toxiguard.monitoring import store
from toxiguard.monitoring.feedback import labelled_window, live_quality
from toxiguard.monitoring.tables import feedback
from toxiguard.serving.limits import key_id
from toxiguard.settings import Settings

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]

KEYS = ("service-key", "moderator-key")
MODERATOR = "moderator"
CORRECTED = "threat"  # the label the moderator corrects with one click


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return train_demo_champion(tmp_path_factory.mktemp("review-ui-home"))


@pytest.fixture(scope="module")
def server(registry: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = start_server(
        registry.home,
        tmp_path_factory.mktemp("review-ui-logs"),
        {"TOXIGUARD_API_KEYS": ",".join(KEYS)},
    )
    try:
        yield process
    finally:
        stop_process(process.process)


@pytest.fixture
def browser(server: ServerProcess, chromium_executable: str) -> Iterator[Browser]:
    """A Chromium page that records every request leaving the server's origin."""
    with chromium_page(chromium_executable, server.url) as page:
        yield page


def _score(server: ServerProcess, text: str) -> dict[str, Any]:
    """Score one comment through the API, as a service using the first key would."""
    response = httpx.post(
        f"{server.url}/v1/predict",
        json={"texts": [text]},
        headers={"X-API-Key": KEYS[0]},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _queued(server: ServerProcess, request_id: str, label: str) -> bool:
    """Return whether the API's queue, filtered by `label`, lists the request's comment."""
    response = httpx.get(
        f"{server.url}/v1/review",
        params={"label": label},
        headers={"X-API-Key": KEYS[0]},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return any(item["request_id"] == request_id for item in response.json()["items"])


def _choose_label(page: Any, label: str) -> None:
    """Pick a label in the Review tab's filter dropdown."""
    page.locator("#review-label input").click()
    page.get_by_role("option", name=label, exact=True).click()


def test_a_moderator_corrects_a_flagged_comment_with_one_click(
    server: ServerProcess, registry: Settings, browser: Browser
) -> None:
    started = datetime.now(UTC) - timedelta(minutes=1)
    answer = _score(server, COMMENT)
    request_id = answer["request_id"]
    flagged = answer["predictions"][0]["flagged"]
    assert flagged, "the demo champion should flag the test comment"
    server.wait_for_log_flush()

    page = browser.page
    page.goto(f"{server.url}/ui/")
    # With API keys set, the UI asks for a login: any user name, an API key as password.
    page.get_by_label("username").fill(MODERATOR)
    page.get_by_label("password").fill(KEYS[1])
    page.get_by_role("button", name="Login").click()
    page.get_by_role("tab", name="Review").click()
    card = page.locator(f'.tg-review-card[data-request-id="{request_id}"]')
    card.wait_for()
    assert card.get_attribute("data-why") == "flagged"
    assert card.locator(".tg-review-text").inner_text() == COMMENT
    shown = {
        card.locator(f'.tg-review-score[data-label="{label}"]').get_attribute("class")
        for label in flagged
    }
    assert all("tg-flagged" in (classes or "") for classes in shown)

    # The label filter: a label the comment is neither flagged nor uncertain on hides it.
    absent = [label for label in LABELS if not _queued(server, request_id, label)]
    assert absent, "the test comment should be near the threshold of some labels only"
    _choose_label(page, absent[0])
    expect(card).to_have_count(0, timeout=TIMEOUT_MS)
    _choose_label(page, flagged[0])
    card.wait_for()

    # One click corrects one label: the flags, with "threat" turned round.
    position = card.get_attribute("data-position")
    toggle = page.locator(f"#review-{position}-toggle-{CORRECTED}")
    expected = set(flagged) ^ {CORRECTED}
    expect(toggle).to_have_text(f"Not {CORRECTED}" if CORRECTED in flagged else f"Also {CORRECTED}")
    toggle.click()
    expect(page.locator("#review-status")).to_contain_text("Stored", timeout=TIMEOUT_MS)
    # The list is read again: the decided comment has left it.
    expect(card).to_have_count(0, timeout=TIMEOUT_MS)
    assert browser.outside == [], "the UI fetched something from outside the server"

    engine = store.make_engine(store.database_url(registry))
    try:
        with engine.connect() as connection:
            row = connection.execute(
                select(feedback).where(feedback.c.request_id == request_id)
            ).one()
        assert row.source == "review" and row.reviewer == key_id(KEYS[1])
        assert {label for label in LABELS if getattr(row, f"label_{label}") == 1} == expected
        # Live quality, as the monitoring job computes it, counts the decision.
        window = labelled_window(engine, started, datetime.now(UTC) + timedelta(minutes=1), None)
        quality = live_quality(window)
    finally:
        engine.dispose()
    assert quality["rows"] == 1
    threat = quality["per_label"][CORRECTED]
    assert threat["rows"] == 1 and threat["positives"] == int(CORRECTED in expected)
    assert quality["per_label"]["toxic"]["positives"] == int("toxic" in expected)
