"""End to end, the monitoring story on the running local stack: shifted traffic replayed to the
API (`toxiguard simulate --shift more-toxic`), then `toxiguard monitor run` stores a drift report,
posts an alert to the configured webhook, shows on the UI's Monitoring tab (in Chromium) and
starts retraining as a run of the served training deployment, which the gate promotes.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from sqlalchemy import select

from tests.integration.flow_services import (
    run_cli,
    stack_env,
    started_stack,
    wait_for_flow_run,
    write_sample,
)
from tests.integration.monitoring_support import webhook_receiver
from toxiguard.labels import LABELS
from toxiguard.monitoring import store
from toxiguard.monitoring.alerts import DRIFT_RULE
from toxiguard.monitoring.tables import alerts, drift_runs
from toxiguard.orchestration.processes import marked_processes
from toxiguard.registry.versions import list_versions
from toxiguard.settings import Settings
from toxiguard.training.pipeline import run_training

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]

STACK_TIMEOUT_S = 240.0
FLOW_TIMEOUT_S = 300.0
SWAP_TIMEOUT_S = 60.0
FEEDBACK_TEXTS = [
    "you are a pathetic idiot and I hope you fail",
    "thanks, the new section reads much better",
    "shut up you moron, nobody asked you",
]


def _api(api_url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{api_url}{path}", json=body, timeout=30)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _wait_for_prediction_log(api_url: str, timeout: float = 60.0) -> None:
    """Wait until the API has written every logged prediction to the store."""
    deadline = time.monotonic() + timeout
    while httpx.get(f"{api_url}/ready", timeout=10).json()["prediction_log"]["pending"]:
        assert time.monotonic() < deadline, "the prediction log did not flush"
        time.sleep(0.2)


def _served_version(api_url: str) -> int | None:
    try:
        version: int | None = httpx.get(f"{api_url}/v1/model", timeout=5).json().get("version")
    except httpx.HTTPError:
        return None
    return version


def _monitoring_tab_text(api_url: str, chromium: str) -> str:
    """Return the Monitoring tab's summary line as Chromium shows it after a refresh."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-gpu", "--no-first-run"]
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(60_000)
            page.goto(f"{api_url}/ui/")
            page.get_by_role("tab", name="Monitoring").click()
            page.locator("#monitoring-refresh").click()
            summary = page.locator("#monitoring-summary")
            summary.get_by_text("Latest run").wait_for()
            return str(summary.inner_text())
        finally:
            browser.close()


def test_simulated_drift_alerts_shows_and_retrains_on_the_stack(
    settings: Settings,
    shared_sample: pd.DataFrame,
    tmp_path: Path,
    chromium_executable: str,
) -> None:
    # The champion at start learnt from 1,500 comments; retraining sees 3,000 (plus feedback),
    # so the gate has a better model to promote.
    first = run_training(
        write_sample(shared_sample.iloc[:1500], tmp_path / "first.csv"), ["tfidf-lr"], settings
    )
    assert first.champion_version == 1
    data = write_sample(shared_sample.iloc[:3000], tmp_path / "train.csv")
    traffic = write_sample(shared_sample.iloc[3000:], tmp_path / "traffic.csv")

    with webhook_receiver() as hook:
        env = stack_env(
            settings.resolved_home,
            TOXIGUARD_TRAINING_DATA=str(data),
            TOXIGUARD_TRAINING_MODELS="tfidf-lr",
            TOXIGUARD_ALERT_WEBHOOK_URL=hook.url,
            # Half of the retraining job's 300 test comments are new to the first champion.
            TOXIGUARD_PROMOTION_MIN_TEST_ROWS="100",
            TOXIGUARD_MODEL_POLL_SECONDS="1",
            PREFECT_RUNNER_POLL_FREQUENCY="2",
        )
        with started_stack(env, timeout=STACK_TIMEOUT_S) as running:
            # A moderator labels three predictions; they join the retraining data.
            answer = _api(running.api_url, "/v1/predict", {"texts": FEEDBACK_TEXTS})
            for index, labels in enumerate([["toxic", "insult"], [], ["toxic", "insult"]]):
                _api(
                    running.api_url,
                    "/v1/feedback",
                    {"request_id": answer["request_id"], "item_index": index, "labels": labels},
                )

            simulated = run_cli(
                ["simulate", "--data", str(traffic), "--shift", "more-toxic", "--n", "400"],
                env,
                180,
            )
            assert simulated.returncode == 0, simulated.stdout + simulated.stderr
            assert "sent 400 comments" in simulated.stdout
            _wait_for_prediction_log(running.api_url)

            out = tmp_path / "monitor.json"
            monitored = run_cli(["monitor", "run", "--json", str(out)], env, 300)
            assert monitored.returncode == 0, monitored.stdout + monitored.stderr
            result = json.loads(out.read_text())

            # The drift report: stored, with its Evidently HTML, and an alert.
            assert result["status"] == "ok" and result["model_version"] == 1
            assert result["rows"] >= 400
            assert result["drift_score"] > 0.3 and result["drifted_features"] > 0
            assert Path(result["report_path"]).is_file()
            assert DRIFT_RULE in {alert["rule"] for alert in result["alerts"]}
            engine = store.make_engine(store.database_url(settings))
            try:
                with engine.connect() as connection:
                    run = connection.execute(
                        select(drift_runs).where(drift_runs.c.id == result["run_id"])
                    ).mappings()
                    stored = run.one()
                    drift_alert = (
                        connection.execute(select(alerts).where(alerts.c.rule == DRIFT_RULE))
                        .mappings()
                        .one()
                    )
            finally:
                engine.dispose()
            assert stored["drift_score"] == pytest.approx(result["drift_score"])
            assert stored["report_path"] == result["report_path"]

            # The webhook got a Slack-compatible message about it.
            assert hook.received, "no alert reached the webhook"
            assert any("drift" in str(body.get("text", "")).lower() for body in hook.received)

            # Retraining ran as the served training deployment, on the data plus feedback.
            retraining = result["retraining"]
            assert retraining["mode"] == "deployment", retraining
            assert retraining["original_rows"] == 3000 and retraining["feedback_rows"] == 3
            assert str(retraining["flow_run_id"]) in str(drift_alert["retraining"])
            prefect = running.prefect_api_url
            final = wait_for_flow_run(prefect, retraining["flow_run_id"], FLOW_TIMEOUT_S)
            assert final["state"]["type"] == "COMPLETED", final["state"]
            assert set(final["tags"]) >= {"retraining", "drift"}
            assert final["parameters"]["data"] == retraining["data"]

            # The gate decided: version 2 is better and becomes champion; the API swaps to it.
            on_stack = settings.model_copy(update={"mlflow_tracking_uri": running.mlflow_url})
            versions = {item["version"]: item for item in list_versions(on_stack)}
            assert set(versions) == {1, 2}
            assert versions[2]["decision"] == "promoted", versions[2]
            assert "champion" in versions[2].get("aliases", []), versions[2]
            deadline = time.monotonic() + SWAP_TIMEOUT_S
            while _served_version(running.api_url) != 2:
                assert time.monotonic() < deadline, "the API did not swap in version 2"
                time.sleep(0.5)
            scores = _api(running.api_url, "/v1/predict", {"texts": ["thanks"]})["predictions"]
            assert set(scores[0]["scores"]) == set(LABELS)

            # The Monitoring tab shows the run and its alert.
            summary = _monitoring_tab_text(running.api_url, chromium_executable)
            assert f"drift score {result['drift_score']:.2f}" in summary, summary
            assert "version 1" in summary and f"{result['rows']} rows" in summary, summary
            shown = re.search(r"(\d+) recent alert", summary)
            assert shown and int(shown.group(1)) >= len(result["alerts"]), summary

    assert marked_processes(running.marker) == []
