"""The Gradio UI in a real headless Chromium, against a real `toxiguard serve` process."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from playwright.sync_api import expect

from tests.e2e.browser import Browser, chromium_page
from tests.integration.services import (
    ServerProcess,
    start_server,
    train_demo_champion,
)
from tests.processes import stop_process
from toxiguard.labels import LABELS
from toxiguard.monitoring import store
from toxiguard.monitoring.dashboard import PANEL_TITLES
from toxiguard.settings import Settings

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]

COMMENT = "You are a stupid idiot and everyone hates you"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return train_demo_champion(tmp_path_factory.mktemp("ui-home"))


@pytest.fixture(scope="module")
def server(registry: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = start_server(registry.home, tmp_path_factory.mktemp("ui-logs"))
    try:
        yield process
    finally:
        stop_process(process.process)


@pytest.fixture
def browser(server: ServerProcess, chromium_executable: str) -> Iterator[Browser]:
    """A Chromium page that records every request leaving the server's origin."""
    with chromium_page(chromium_executable, server.url) as page:
        yield page


def _api_scores(server: ServerProcess, texts: list[str]) -> list[dict[str, Any]]:
    response = httpx.post(f"{server.url}/v1/predict", json={"texts": texts}, timeout=30)
    assert response.status_code == 200
    predictions: list[dict[str, Any]] = response.json()["predictions"]
    return predictions


def test_score_a_comment_in_the_browser(server: ServerProcess, browser: Browser) -> None:
    page = browser.page
    page.goto(f"{server.url}/ui/")
    page.locator("#comment-input textarea").fill(COMMENT)
    page.locator("#score-button").click()
    rows = page.locator("#scores .tg-row")
    rows.nth(len(LABELS) - 1).wait_for()
    shown = {
        rows.nth(i).get_attribute("data-label"): (
            float(rows.nth(i).get_attribute("data-score")),
            rows.nth(i).get_attribute("data-flagged") == "true",
        )
        for i in range(rows.count())
    }
    assert list(shown) == list(LABELS)
    expected = _api_scores(server, [COMMENT])[0]
    for label in LABELS:
        assert shown[label][0] == pytest.approx(expected["scores"][label], abs=1e-6)
        assert shown[label][1] == (label in expected["flagged"])
    flagged_rows = page.locator("#scores .tg-row.tg-flagged")
    assert flagged_rows.count() == len(expected["flagged"])
    # Each label's threshold is written beside its score (and marked on its bar): the model's.
    model = httpx.get(f"{server.url}/v1/model").json()
    for i, label in enumerate(LABELS):
        threshold = model["thresholds"][label]
        assert float(rows.nth(i).get_attribute("data-threshold")) == pytest.approx(
            threshold, abs=1e-6
        )
        # Written with as many decimals as the score beside it (3 to 6, enough to tell them apart).
        score_text = rows.nth(i).locator(".tg-value").inner_text()
        digits = len(score_text.split(".")[1])
        assert rows.nth(i).locator(".tg-threshold").inner_text() == f"/ thr {threshold:.{digits}f}"
        assert rows.nth(i).locator(".tg-tick").is_visible()
    version = model["version"]
    assert f"version {version}" in page.locator("#model-version").inner_text()
    assert browser.outside == [], "the UI fetched something from outside the server"


def test_ui_highlights_the_words_behind_each_flagged_label(
    server: ServerProcess, browser: Browser
) -> None:
    page = browser.page
    page.goto(f"{server.url}/ui/")
    page.locator("#comment-input textarea").fill(COMMENT)
    page.locator("#score-button").click()
    sections = page.locator("#scores .tg-why-text")
    sections.first.wait_for()
    explained = httpx.post(f"{server.url}/v1/explain", json={"text": COMMENT}, timeout=30).json()
    shown = [sections.nth(i).get_attribute("data-label") for i in range(sections.count())]
    flagged = explained["flagged"]
    assert flagged, "the test comment should be flagged"
    assert shown == flagged
    for label in flagged:
        marks = page.locator(f'#scores .tg-why-text[data-label="{label}"] mark')
        strongest = max(
            range(marks.count()),
            key=lambda i: float(marks.nth(i).get_attribute("data-contribution")),
        )
        spans = explained["explanations"][label]["spans"]
        top = max(spans, key=lambda span: span["contribution"])
        assert marks.nth(strongest).inner_text() == top["text"]
        # Every word the API says raised the score is marked, and nothing else.
        raising = [s["text"] for s in spans if s["contribution"] > 0]
        assert [marks.nth(i).inner_text() for i in range(marks.count())] == raising
    assert browser.outside == []


def test_example_fills_the_box_and_empty_comment_is_refused(
    server: ServerProcess, browser: Browser
) -> None:
    page = browser.page
    page.goto(f"{server.url}/ui/")
    page.get_by_text("You are a complete idiot", exact=False).first.click()
    box = page.locator("#comment-input textarea")
    # Gradio fills the box asynchronously after the click: wait for it (fails after 30 s).
    expect(box).to_have_value(re.compile("complete idiot"), timeout=30_000)
    box.fill("")
    page.locator("#score-button").click()
    page.get_by_text("Type a comment first.").first.wait_for()
    assert browser.outside == []


def test_batch_tab_scores_an_uploaded_csv(
    server: ServerProcess, registry: Settings, browser: Browser, tmp_path: Path
) -> None:
    page = browser.page
    texts = [
        "Thanks for the careful edit.",
        "You are an idiot",
        "Go away, moron",
        "Please add a source for this claim.",
        "",
    ]
    upload = tmp_path / "comments.csv"
    pd.DataFrame({"id": [f"c{i}" for i in range(len(texts))], "comment_text": texts}).to_csv(
        upload, index=False
    )
    page.goto(f"{server.url}/ui/")
    page.get_by_role("tab", name="Batch (CSV)").click()
    page.locator("#batch-upload input[type=file]").set_input_files(str(upload))
    # The uploaded file's row names it in an aria-label: its text is split into stem and
    # extension spans, which Gradio sometimes renders with a space between them ("comments .csv").
    page.locator('#batch-upload [aria-label="comments.csv"]').wait_for()
    page.locator("#batch-button").click()
    link = page.locator("#batch-download a").first
    link.wait_for()
    with page.expect_download() as download_info:
        link.click()
    downloaded = tmp_path / "downloaded.csv"
    download_info.value.save_as(str(downloaded))
    scored = pd.read_csv(downloaded, keep_default_na=False, dtype={"id": str})
    assert scored["id"].tolist() == [f"c{i}" for i in range(len(texts))]
    assert scored["comment_text"].tolist() == texts
    # A file keeps every row, the empty one too; the API refuses empty texts, so the rows with
    # words are compared with it.
    worded = scored.iloc[:4]
    expected = _api_scores(server, texts[:4])
    for label in LABELS:
        assert worded[f"score_{label}"].tolist() == pytest.approx(
            [p["scores"][label] for p in expected], abs=1e-9
        )
    assert worded["flagged"].tolist() == [" ".join(p["flagged"]) for p in expected]
    assert "Scored 5 comments" in page.locator("#batch-summary").inner_text()

    # The preview marks exactly the score cells of the labels the file's `flagged` column names.
    preview_rows = page.locator("#batch-preview tr[data-row]")
    assert preview_rows.count() == len(texts)
    for i, flagged in enumerate(scored["flagged"]):
        cells = preview_rows.nth(i).locator("td.tg-score")
        assert [cells.nth(j).get_attribute("data-label") for j in range(cells.count())] == list(
            LABELS
        )
        marked = [
            cells.nth(j).get_attribute("data-label")
            for j in range(cells.count())
            if "tg-hit" in (cells.nth(j).get_attribute("class") or "").split()
        ]
        assert marked == flagged.split(), (i, texts[i])
        for j, label in enumerate(LABELS):
            assert cells.nth(j).get_attribute("data-flagged") == str(label in marked).lower()
            assert float(cells.nth(j).inner_text()) == pytest.approx(
                scored[f"score_{label}"].iloc[i], abs=5e-4
            )
    hits = page.locator("#batch-preview td.tg-hit")
    assert hits.count() == sum(len(f.split()) for f in scored["flagged"]) > 0
    plain = page.locator("#batch-preview td.tg-score:not(.tg-hit)").first
    background = "e => getComputedStyle(e).backgroundColor"
    assert hits.first.evaluate(background) != plain.evaluate(background)
    assert browser.outside == []

    # The UI's predictions reach the prediction log, with source "ui", one request per file.
    server.wait_for_log_flush()
    engine = store.make_engine(f"sqlite:///{registry.home / 'monitoring.db'}")
    frame = store.read_predictions(engine, source="ui")
    engine.dispose()
    batch = frame[frame.request_id == frame.request_id.iloc[-1]].sort_values("item_index")
    assert batch.text.tolist() == texts
    assert batch.item_index.tolist() == list(range(len(texts)))


def test_monitoring_tab_shows_the_latest_run(
    server: ServerProcess, registry: Settings, browser: Browser
) -> None:
    from toxiguard.monitoring.job import run_monitoring

    # A few logged predictions only: the job stores an "insufficient data" run, not a number.
    outcome = run_monitoring(registry).to_dict()
    assert outcome["status"] == "insufficient_data"
    page = browser.page
    page.goto(f"{server.url}/ui/")
    page.get_by_role("tab", name="Monitoring").click()
    # Filled on opening, without Refresh: the summary and every panel's figure.
    summary = page.locator("#monitoring-summary")
    summary.get_by_text("insufficient_data").wait_for()
    assert "Latest run" in summary.inner_text()
    for i in range(len(PANEL_TITLES)):
        page.locator(f"#monitoring-panel-{i} img").first.wait_for()
    # Refresh still redraws.
    page.locator("#monitoring-refresh").click()
    summary.get_by_text("insufficient_data").wait_for()
    assert browser.outside == []


def test_model_tab_shows_the_champions_audit(
    server: ServerProcess, registry: Settings, browser: Browser
) -> None:
    from toxiguard.registry.client import load_toxicity_model, resolve_model_uri

    package, _ = load_toxicity_model(resolve_model_uri(None, registry), registry)
    assert package.audit is not None, "training saves the audit with the model"
    robustness = package.audit["robustness"]
    page = browser.page
    page.goto(f"{server.url}/ui/")
    page.get_by_role("tab", name="Model").click()
    summary = page.locator("#model-audit-summary")
    summary.get_by_text("final bias score").wait_for()
    text = summary.inner_text()
    assert "version 1" in text
    assert f"{robustness['clean_auc']:.4f}" in text
    page.locator("#model-audit-plot img").first.wait_for()
    # The robustness table: one row per obfuscation after the clean one, with the model's AUC.
    table = page.locator("#model-audit-robustness")
    for name, auc in robustness["perturbed"].items():
        cell = table.locator(f'tr[data-row="{name}"] td[data-column="mean_roc_auc"]')
        cell.wait_for()
        if auc is not None:
            assert float(cell.inner_text()) == pytest.approx(auc, abs=1e-4), name
    neutral = page.locator("#model-audit-neutral")
    assert neutral.locator('tr[data-row="a gay man"]').count() == 1
    assert browser.outside == []


def test_api_docs_render_without_a_cdn(server: ServerProcess, browser: Browser) -> None:
    page = browser.page
    page.goto(f"{server.url}/docs")
    # Swagger UI drew the operations from /openapi.json.
    page.locator(".opblock-summary-path", has_text="/v1/predict").first.wait_for()
    assert page.locator(".opblock").count() >= 5
    assert "toxiguard" in page.locator(".info .title").inner_text()
    icon = page.locator("link[rel='shortcut icon']").get_attribute("href") or ""
    assert icon.startswith("/") and httpx.get(f"{server.url}{icon}").status_code == 200
    page.goto(f"{server.url}/redoc")
    page.get_by_role("heading", name=re.compile(r"^toxiguard")).first.wait_for()
    page.get_by_text("/v1/predict").first.wait_for()
    page.wait_for_load_state("networkidle")
    assert browser.outside == [], "the API docs fetched something from outside the server"
    # ReDoc's sidebar asks for Redocly's logo from its CDN; the pages' policy refuses it.
    assert all(url.startswith("https://cdn.redoc.ly/") for url in browser.blocked)
