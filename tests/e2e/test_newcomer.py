"""The newcomer's path, as the README gives it: `make run` on a fresh home (the demo corpus), the
UI in a real browser, then `make stop`; the gate compares, the Monitoring tab is filled on first
sight, and nothing is left running."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.browser import chromium_page
from tests.integration.flow_services import stack_env
from tests.processes import kill_marked
from toxiguard.data.validation import TRAIN_NAMES
from toxiguard.monitoring.dashboard import PANEL_TITLES
from toxiguard.orchestration.processes import marked_processes

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]

REPOSITORY = Path(__file__).resolve().parents[2]
MAKE_TIMEOUT_S = 900


def _make(target: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Return the finished `make TARGET` in the repository, its output captured."""
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPOSITORY), target],
        env=env,
        capture_output=True,
        text=True,
        timeout=MAKE_TIMEOUT_S,
        check=False,
    )


def test_make_run_then_the_ui_then_make_stop(tmp_path: Path, chromium_executable: str) -> None:
    if any((REPOSITORY / "data" / "raw" / name).exists() for name in TRAIN_NAMES):
        pytest.skip("data/raw holds a Kaggle file: `make run` would train on it, not the demo")
    home = tmp_path / "home"
    env = {**stack_env(home), "COLUMNS": "80"}
    marker = ""
    try:
        started = time.monotonic()
        run = _make("run", env)
        seconds = time.monotonic() - started
        output = run.stdout + run.stderr
        state = home / "stack" / "stack.json"
        marker = str(json.loads(state.read_text())["marker"]) if state.is_file() else ""
        assert run.returncode == 0, output[-6000:]
        print(f"make run on a fresh home (demo corpus): {seconds:.0f} s")
        assert "DEMO:" in run.stdout
        # The gate compared the later models with the first champion on unseen test comments.
        compared = [
            int(n)
            for n in re.findall(r"champion v\d+ [\d.]+ \+ margin \S+ on (\d+) test", run.stdout)
        ]
        assert compared and min(compared) >= 200, run.stdout
        assert "challenger: version" in run.stdout
        assert re.search(
            r"Sent 400 demo comments through the API and ran monitoring once", run.stdout
        ), run.stdout
        assert max(len(line) for line in run.stdout.splitlines()) <= 80, run.stdout
        assert "Downloading artifacts" not in output and "INFO mlflow" not in output
        assert "View run" not in output and "Beginning flow run" not in output

        api = f"http://127.0.0.1:{env['TOXIGUARD_PORT']}"
        with chromium_page(chromium_executable, api) as browser:
            page = browser.page
            page.goto(f"{api}/ui/")
            page.get_by_role("tab", name="Monitoring").click()
            # Filled without Refresh: the demo traffic's drift run and every panel.
            summary = page.locator("#monitoring-summary")
            summary.get_by_text("status ok").wait_for()
            assert "400 rows" in summary.inner_text()
            for i in range(len(PANEL_TITLES)):
                page.locator(f"#monitoring-panel-{i} img").first.wait_for()
            assert browser.outside == []
    finally:
        stop = _make("stop", env)
        if marker:
            kill_marked(marker)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert marker and marked_processes(marker) == []
