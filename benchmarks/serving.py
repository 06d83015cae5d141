"""Serving throughput and latency: a loopback load generator against `toxiguard serve`.

For 1, 8 and 32 concurrent clients sending single-comment and 32-comment requests to
POST /v1/predict, prints requests/s, comments/s, p50/p95/p99 latency and errors as a markdown
table, then checks that the prediction log holds exactly one row per comment scored.

    python benchmarks/serving.py                      # trains a tfidf-lr champion first
    python benchmarks/serving.py --home .toxiguard    # serves the champion already there
    python benchmarks/serving.py --microbatch both    # compares micro-batching on and off
    python benchmarks/serving.py --model-dir DIR      # serves a saved model (e.g. a transformer)

Each cell is bounded by --requests and --seconds. The clients are light asyncio loops on raw
HTTP/1.1 keep-alive connections, but they share the machine's cores with the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SHARED_TRAIN = ROOT.parent / "shared" / "data" / "jigsaw" / "train.csv.gz"


@dataclass
class Cell:
    """The outcome of one (clients, comments per request) load run."""

    mode: str
    clients: int
    size: int
    latencies: list[float]
    errors: int
    seconds: float

    def row(self) -> list[str]:
        """Return the table row of this cell."""
        n = len(self.latencies)
        ms = np.array(self.latencies) * 1000 if n else np.array([np.nan])
        return [
            self.mode,
            str(self.clients),
            str(self.size),
            str(n),
            f"{n / self.seconds:,.0f}",
            f"{n * self.size / self.seconds:,.0f}",
            f"{np.percentile(ms, 50):.1f}",
            f"{np.percentile(ms, 95):.1f}",
            f"{np.percentile(ms, 99):.1f}",
            str(self.errors),
        ]


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def comments(count: int, seed: int = 0) -> list[str]:
    """Return real comments from the shared data (or the demo corpus if it is absent)."""
    if SHARED_TRAIN.is_file():
        frame = pd.read_csv(SHARED_TRAIN, usecols=["comment_text"], keep_default_na=False)
    else:
        from toxiguard.data.demo import make_demo_corpus

        frame = make_demo_corpus()
    texts = frame["comment_text"].astype(str).sample(n=count, random_state=seed, replace=True)
    return [text[:5000] for text in texts]


def train_champion(home: Path, family: str, rows: int) -> None:
    """Train and register a champion of `family` in `home` on a sample of the shared data."""
    from toxiguard.settings import Settings
    from toxiguard.training.pipeline import run_training

    data = SHARED_TRAIN
    if rows and SHARED_TRAIN.is_file():
        frame = pd.read_csv(SHARED_TRAIN, dtype={"id": str}, keep_default_na=False)
        data = home / "train-sample.csv.gz"
        frame.sample(n=min(rows, len(frame)), random_state=0).to_csv(data, index=False)
    elif not SHARED_TRAIN.is_file():
        from toxiguard.data.demo import write_demo_corpus

        data = write_demo_corpus(home / "demo.csv.gz")
    print(f"training {family} on {data} ...", file=sys.stderr)
    uri = f"sqlite:///{home / 'mlflow.db'}"  # the home's own registry, whatever the environment
    run_training(
        data, [family], Settings.model_validate({"home": home, "mlflow_tracking_uri": uri})
    )


def register_saved(home: Path, model_dir: Path) -> None:
    """Register a saved model (e.g. the transformer benchmark's) as champion in `home`."""
    from toxiguard.models.package import ModelPackage
    from toxiguard.registry.promotion import promote
    from toxiguard.registry.runs import log_model_run
    from toxiguard.settings import Settings

    settings = Settings.model_validate(
        {"home": home, "mlflow_tracking_uri": f"sqlite:///{home / 'mlflow.db'}"}
    )
    model = ModelPackage.load(model_dir)
    _, version = log_model_run(
        model,
        settings=settings,
        run_name=f"{model.family} (saved)",
        params={"family": model.family, "source_dir": str(model_dir)},
        metrics={},
        reports={},
        figures={},
        dataset_source=str(model_dir),
        dataset_fingerprint="saved-model",
        splits_dir=None,
    )
    promote(settings, version, reason="serving benchmark")


def start_server(
    home: Path, port: int, microbatch: bool, wait_ms: float
) -> subprocess.Popen[bytes]:
    """Start `toxiguard serve` and wait until /health answers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOXIGUARD_", "MLFLOW_"))}
    env |= {
        "TOXIGUARD_HOME": str(home),
        "TOXIGUARD_MICROBATCH": "true" if microbatch else "false",
        "TOXIGUARD_MICROBATCH_WAIT_MS": str(wait_ms),
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    log = (home / f"bench-serve-{port}.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from toxiguard.cli import main; main()",
            "serve",
            "--port",
            str(port),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return process
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.3)
    stop_server(process)
    raise SystemExit(f"server did not start; see {log.name}")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    """Stop the server (SIGTERM lets it flush the prediction log)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def get_json(port: int, path: str) -> dict[str, object]:
    """Return the JSON body of a GET request."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        body: dict[str, object] = json.loads(response.read())
        return body


async def _client(
    port: int, bodies: list[bytes], size: int, budget: list[int], deadline: float, cell: Cell
) -> None:
    """Send requests on one keep-alive connection until the budget or the time runs out."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = 0
    try:
        while budget[0] > 0 and time.perf_counter() < deadline:
            budget[0] -= 1
            body = bodies[i % len(bodies)]
            i += 1
            head = (
                f"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            started = time.perf_counter()
            writer.write(head + body)
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            payload = await reader.readexactly(length)
            elapsed = time.perf_counter() - started
            if status == 200 and len(json.loads(payload)["predictions"]) == size:
                cell.latencies.append(elapsed)
            else:
                cell.errors += 1
    finally:
        writer.close()


async def run_cell(
    port: int, texts: list[str], mode: str, clients: int, size: int, requests: int, seconds: float
) -> Cell:
    """Run one load cell and return its measurements."""
    bodies = [
        json.dumps({"texts": texts[start : start + size]}).encode()
        for start in range(0, len(texts) - size, size)
    ]
    cell = Cell(mode, clients, size, [], 0, 0.0)
    budget = [requests]
    started = time.perf_counter()
    await asyncio.gather(
        *(
            _client(port, bodies[c::clients] or bodies, size, budget, started + seconds, cell)
            for c in range(clients)
        )
    )
    cell.seconds = time.perf_counter() - started
    return cell


def log_rows(home: Path) -> int:
    """Return the number of rows in the home's prediction log."""
    from toxiguard.monitoring import store

    engine = store.make_engine(f"sqlite:///{home / 'monitoring.db'}")
    try:
        store.upgrade_schema(engine)
        return store.count_predictions(engine)
    finally:
        engine.dispose()


def main() -> None:
    """Run the benchmark and print the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="TOXIGUARD_HOME with a champion already.")
    parser.add_argument("--family", default="tfidf-lr", help="Family to train without --home.")
    parser.add_argument(
        "--model-dir", type=Path, help="Serve this saved model (registered as champion first)."
    )
    parser.add_argument("--train-rows", type=int, default=0, help="Train on a sample (0: all).")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--requests", type=int, default=2000, help="Most requests per cell.")
    parser.add_argument("--seconds", type=float, default=20.0, help="Most seconds per cell.")
    parser.add_argument("--microbatch", choices=["on", "off", "both"], default="on")
    parser.add_argument("--wait-ms", type=float, default=0.0, help="Micro-batching extra wait.")
    args = parser.parse_args()

    home = args.home.resolve() if args.home else Path(tempfile.mkdtemp(prefix="tg-bench-"))
    if args.model_dir is not None:
        register_saved(home, args.model_dir.resolve())
    elif args.home is None:
        train_champion(home, args.family, args.train_rows)
    texts = comments(max(4000, 32 * 64))
    modes = {"on": [True], "off": [False], "both": [True, False]}[args.microbatch]
    cells: list[Cell] = []
    made = 0
    rows_before = log_rows(home)
    for microbatch in modes:
        port = free_port()
        server = start_server(home, port, microbatch, args.wait_ms)
        try:
            model = get_json(port, "/v1/model")
            batching = f"on (wait {args.wait_ms:g} ms)" if microbatch else "off"
            mode = f"{model['family']} v{model['version']}, microbatch {batching}"
            warm_up = asyncio.run(run_cell(port, texts, mode, 4, 1, 200, 5.0))
            made += len(warm_up.latencies)
            for size in args.sizes:
                for clients in args.clients:
                    cell = asyncio.run(
                        run_cell(port, texts, mode, clients, size, args.requests, args.seconds)
                    )
                    cells.append(cell)
                    made += len(cell.latencies) * size
                    print(" | ".join(cell.row()), file=sys.stderr)
        finally:
            stop_server(server)
    rows = log_rows(home) - rows_before

    header = ["model", "clients", "comments/request", "requests", "requests/s", "comments/s"]
    header += ["p50 ms", "p95 ms", "p99 ms", "errors"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for cell in cells:
        print("| " + " | ".join(cell.row()) + " |")
    print()
    print(f"prediction log rows written: {rows:,}; comments scored: {made:,} (incl. warm-up)")
    print(f"load average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    if rows != made or any(cell.errors for cell in cells):
        raise SystemExit("FAILED: errors, or prediction log rows != comments scored")


if __name__ == "__main__":
    main()
