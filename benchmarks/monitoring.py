"""The monitoring job: its time on 1k, 10k and 100k logged predictions, and its detection rates.

Part 1 (time): a complement-nb model is trained and registered (with its monitoring reference)
on 12,000 real comments of the shared data; N other real comments (drawn with replacement when
N is larger than the pool) are scored and written through the real prediction log into a fresh
SQLite store; then `run_monitoring` runs once with text content drift and once without. The
time is the whole job: reading the window, Evidently, storing the result, the HTML report and
the MLflow run (the reference is already cached; no alert fires on unshifted traffic).

Part 2 (detection): as `tests/integration/test_monitoring.py`, with a small tfidf-lr model and
its reference (3,000 held-out comments), the share of seeded windows of real comments in which
the default rules raise a drift alert, per shift and window size.

    python benchmarks/monitoring.py                       # everything (about 20 min on 2 cores)
    python benchmarks/monitoring.py --sizes 1000 10000 --windows 10
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SHARED_TRAIN = ROOT.parent / "shared" / "data" / "jigsaw" / "train.csv.gz"
RESULTS = ROOT / "benchmarks" / "results"
SHIFTS = ("none", "longer", "shorter", "more-toxic", "caps")


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Return a markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def load() -> str:
    """Return the 1-minute load average and the CPU count, for the record."""
    return f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"


def job_times(frame: pd.DataFrame, sizes: Sequence[int], work: Path) -> list[dict[str, Any]]:
    """Return the monitoring job's wall time per number of logged predictions, text drift on/off."""
    from tests.integration.monitoring_support import log_traffic, write_csv

    from toxiguard.labels import TEXT_COLUMN
    from toxiguard.monitoring import store
    from toxiguard.monitoring.job import run_monitoring
    from toxiguard.registry.client import load_toxicity_model, resolve_model_uri
    from toxiguard.settings import Settings
    from toxiguard.training.pipeline import run_training

    shuffled = frame.sample(frac=1.0, random_state=3).reset_index(drop=True)
    data = write_csv(shuffled.iloc[:12_000], work / "train.csv")
    pool = shuffled.iloc[12_000:][TEXT_COLUMN].tolist()
    base = Settings.model_validate(
        {"home": work / "home", "retrain_on_drift": False, "monitoring_min_rows": 200}
    )
    run_training(data, ["complement-nb"], base)
    model, info = load_toxicity_model(resolve_model_uri(None, base), base)
    results = []
    for size in sizes:
        settings = base.model_copy(
            update={"database_url": f"sqlite:///{work / f'monitoring-{size}.db'}"}
        )
        engine = store.make_engine(store.database_url(settings))
        store.upgrade_schema(engine)
        texts = pd.Series(pool).sample(n=size, replace=size > len(pool), random_state=size)
        now = datetime.now(UTC)
        started = time.perf_counter()
        log_traffic(
            engine, model, texts.tolist(), version=int(info["version"]), created_at=now,
            batch_size=256,
        )  # fmt: skip
        logged_s = time.perf_counter() - started
        engine.dispose()
        for text_drift in (False, True):
            current = settings.model_copy(update={"text_drift": text_drift})
            run_monitoring(current, now=now + timedelta(seconds=1))  # warm: reference cached
            started = time.perf_counter()
            outcome = run_monitoring(current, now=now + timedelta(seconds=2))
            total = time.perf_counter() - started
            results.append(
                {
                    "predictions": size,
                    "text_drift": text_drift,
                    "job_s": total,
                    "drift_s": outcome.result.seconds,
                    "columns": len(outcome.result.columns),
                    "drift_score": outcome.result.drift_score,
                    "alerts": [alert.rule for alert in outcome.alerts],
                    "log_write_s": logged_s,
                    "load": load(),
                }
            )
            logging.info("timed %s", results[-1])
    return results


def detection(
    frame: pd.DataFrame, window_rows: Sequence[int], windows: int
) -> list[dict[str, Any]]:
    """Return, per shift and window size, in how many seeded windows a drift alert fires."""
    from tests.integration.monitoring_support import detection_setup, drift_alert_count

    from toxiguard.settings import Settings

    setup = detection_setup(
        frame.sample(n=25_000, random_state=11).reset_index(drop=True),
        train_rows=12_000,
        reference_rows=3_000,
    )
    settings = Settings.model_validate({"home": Path(tempfile.mkdtemp()) / "home"})
    results = []
    for rows in window_rows:
        current = settings.model_copy(update={"monitoring_min_rows": min(rows, 200)})
        for shift in SHIFTS:
            started = time.perf_counter()
            alerted, scores = drift_alert_count(setup, shift, current, n=rows, seeds=range(windows))
            results.append(
                {
                    "window_rows": rows,
                    "shift": shift,
                    "alerts": alerted,
                    "windows": windows,
                    "mean_drift_score": sum(scores) / len(scores),
                    "max_drift_score": max(scores),
                    "min_drift_score": min(scores),
                    "seconds_per_window": (time.perf_counter() - started) / windows,
                }
            )
            logging.info("detection %s", results[-1])
    return results


def main(argv: Sequence[str] | None = None) -> None:
    """Run both parts and print their tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--window-rows", type=int, nargs="+", default=[200, 500])
    parser.add_argument("--windows", type=int, default=20, help="seeded windows per cell")
    parser.add_argument("--skip-times", action="store_true")
    parser.add_argument("--skip-detection", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for the results")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for noisy in ("mlflow", "alembic", "httpx", "toxiguard"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    sys.path.insert(0, str(ROOT))  # for tests.integration.monitoring_support
    frame = pd.read_csv(SHARED_TRAIN, dtype={"id": str}, keep_default_na=False)
    print(f"load before: {load()}")
    report: dict[str, Any] = {"started": datetime.now(UTC).isoformat(), "load_before": load()}
    with tempfile.TemporaryDirectory(prefix="toxiguard-bench-monitoring-") as tmp:
        if not args.skip_times:
            report["times"] = job_times(frame, args.sizes, Path(tmp))
            print(
                table(
                    ["logged predictions", "text drift", "job s", "of which drift s", "columns"],
                    [
                        [
                            f"{r['predictions']:,}",
                            "on" if r["text_drift"] else "off",
                            f"{r['job_s']:.1f}",
                            f"{r['drift_s']:.1f}",
                            str(r["columns"]),
                        ]
                        for r in report["times"]
                    ],
                )
            )
    if not args.skip_detection:
        report["detection"] = detection(frame, args.window_rows, args.windows)
        print(
            table(
                ["window rows", "shift", "drift alerts", "drift score mean (min-max)", "s/window"],
                [
                    [
                        str(r["window_rows"]),
                        r["shift"],
                        f"{r['alerts']}/{r['windows']}",
                        f"{r['mean_drift_score']:.2f} ({r['min_drift_score']:.2f}-"
                        f"{r['max_drift_score']:.2f})",
                        f"{r['seconds_per_window']:.1f}",
                    ]
                    for r in report["detection"]
                ],
            )
        )
    report["load_after"] = load()
    print(f"load after: {report['load_after']}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "monitoring.json").write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
