"""Serving throughput and latency: a loopback load generator against `toxiguard serve`.

For 1, 8 and 32 concurrent clients sending single-comment and 32-comment requests to
POST /v1/predict, prints requests/s, comments/s, p50/p95/p99 latency and errors as a markdown
table, then checks that the prediction log holds exactly one row per comment scored.

    python benchmarks/serving.py                      # trains a tfidf-lr champion first
    python benchmarks/serving.py --home .toxiguard    # serves the champion already there
    python benchmarks/serving.py --microbatch both    # compares micro-batching on and off
    python benchmarks/serving.py --model-dir DIR      # serves a saved model (e.g. a transformer)
    python benchmarks/serving.py --spool-cost 500     # the prediction spool's cost per request
    python benchmarks/serving.py --fairness           # light clients' latency beside heavy ones

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
    home: Path, port: int, microbatch: bool, wait_ms: float, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start `toxiguard serve` (with `extra_env` settings) and wait until /health answers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOXIGUARD_", "MLFLOW_"))}
    env |= {
        "TOXIGUARD_HOME": str(home),
        "TOXIGUARD_MICROBATCH": "true" if microbatch else "false",
        "TOXIGUARD_MICROBATCH_WAIT_MS": str(wait_ms),
        "GRADIO_ANALYTICS_ENABLED": "False",
        **(extra_env or {}),
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


def spool_cost(repeats: int) -> list[list[str]]:
    """Return table rows: time of `PredictionLog.record` (the request path's share of the log)
    for 1, 16 and 256 comments, with the spool off (memory), on (flush to the OS) and fsync."""
    from toxiguard.labels import LABELS
    from toxiguard.monitoring import store
    from toxiguard.monitoring.prediction_log import PredictionBatch, PredictionLog
    from toxiguard.monitoring.spool import Spool

    texts = comments(1024)
    rng = np.random.default_rng(0)
    rows: list[list[str]] = []
    for size in (1, 16, 256):
        scores = rng.random((size, len(LABELS)))
        for mode in ("off", "on", "fsync"):
            with tempfile.TemporaryDirectory() as folder:
                root = Path(folder)
                spool = None
                if mode != "off":
                    spool = Spool(root / "spool", max_bytes=1 << 40, fsync=mode == "fsync")
                engine = store.make_engine(f"sqlite:///{root / 'monitoring.db'}")
                log = PredictionLog(engine, spool=spool, buffer_rows=10**9, buffer_bytes=1 << 40)
                log.start()  # the writer drains meanwhile, as in a server
                seconds = []
                for i in range(repeats):
                    start = (i * size) % (len(texts) - size)
                    batch = PredictionBatch(
                        f"bench-{i}", "api", texts[start : start + size], scores, scores > 0.5,
                        "toxiguard", 1, "tfidf-lr",
                    )  # fmt: skip
                    started = time.perf_counter()
                    log.record(batch)
                    seconds.append(time.perf_counter() - started)
                log.close(120)
            ms = np.array(seconds) * 1000
            rows.append(
                [str(size), mode, str(repeats)] + [f"{np.percentile(ms, q):.3f}" for q in (50, 99)]
            )
    return rows


def print_spool_cost(repeats: int) -> None:
    """Print the spool's cost per request as a markdown table."""
    header = ["comments/request", "spool", "requests", "record p50 ms", "record p99 ms"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in spool_cost(repeats):
        print("| " + " | ".join(row) + " |")
    print(f"load average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")


def heavy_texts(chars: int, count: int = 256) -> list[str]:
    """Return `count` texts of `chars` characters, each real comments run together."""
    pool = " ".join(comments(2000, seed=1))
    return [(pool[(i * 7919) % len(pool) :] + pool)[:chars] for i in range(count)]


def _heavy_load(port: int, chars: int, clients: int, seconds: float, queue: object) -> None:
    """Send 256-comment requests of `chars`-character comments from `clients` connections for
    `seconds` (in a process of its own, so its JSON work does not delay the light clients)."""
    bodies = [json.dumps({"texts": heavy_texts(chars)}).encode()]
    cell = Cell("heavy", clients, 256, [], 0, 0.0)
    started = time.perf_counter()

    async def load() -> None:
        budget = [10**9]
        deadline = started + seconds
        await asyncio.gather(
            *(_client(port, bodies, 256, budget, deadline, cell) for _ in range(clients))
        )

    asyncio.run(load())
    cell.seconds = time.perf_counter() - started
    queue.put((cell.latencies, cell.errors, cell.seconds))  # type: ignore[attr-defined]


def fairness_run(
    home: Path, batch_chars: int, heavy_chars: int, heavy_clients: int, seconds: float
) -> list[str]:
    """Return one table row: 2 light clients' p50/p99 alone and beside `heavy_clients` heavy
    ones, the ratio of the p99s, and the heavy clients' throughput."""
    import multiprocessing

    port = free_port()
    settings = {
        "TOXIGUARD_MICROBATCH_MAX_CHARS": str(batch_chars),
        # The heavy requests are the reproduced maximum (256 x 10,000 characters).
        "TOXIGUARD_MAX_REQUEST_CHARS": str(256 * heavy_chars),
        "TOXIGUARD_MAX_TEXT_CHARS": str(max(heavy_chars, 10_000)),
    }
    server = start_server(home, port, True, 0.0, settings)
    light = comments(2000, seed=2)
    try:
        asyncio.run(run_cell(port, light, "warm-up", 2, 1, 200, 3.0))
        alone = asyncio.run(run_cell(port, light, "alone", 2, 1, 10**9, seconds))
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        heavy = context.Process(
            target=_heavy_load, args=(port, heavy_chars, heavy_clients, seconds + 4, queue)
        )
        heavy.start()
        time.sleep(2.0)  # the heavy requests are in flight before the light clients start
        beside = asyncio.run(run_cell(port, light, "beside", 2, 1, 10**9, seconds))
        heavy_latencies, heavy_errors, heavy_seconds = queue.get(timeout=600)
        heavy.join(timeout=60)
    finally:
        stop_server(server)
    p50_alone, p99_alone = np.percentile(np.array(alone.latencies) * 1000, [50, 99])
    p50_beside, p99_beside = np.percentile(np.array(beside.latencies) * 1000, [50, 99])
    done = len(heavy_latencies)
    return [
        f"{batch_chars:,}",
        f"{heavy_clients} x 256 x {heavy_chars:,}",
        f"{len(alone.latencies):,}",
        f"{p50_alone:.1f}",
        f"{p99_alone:.1f}",
        f"{len(beside.latencies):,}",
        f"{p50_beside:.1f}",
        f"{p99_beside:.1f}",
        f"{p99_beside / p99_alone:.1f}x",
        f"{done} ({done * 256 / heavy_seconds:,.0f} comments/s, "
        f"{done * 256 * heavy_chars / heavy_seconds / 1e6:.2f} M chars/s)",
        str(alone.errors + beside.errors + heavy_errors),
    ]


def print_fairness(home: Path, args: argparse.Namespace) -> None:
    """Print the fairness table: light clients alone and beside heavy ones, per batch size."""
    header = ["microbatch max chars", "heavy clients x comments x chars", "light alone requests"]
    header += ["p50 ms", "p99 ms", "light beside heavy requests", "p50 ms", "p99 ms"]
    header += ["p99 ratio", "heavy requests (throughput)", "errors"]
    rows = []
    for batch_chars in args.fair_batch_chars:
        row = fairness_run(home, batch_chars, args.heavy_chars, args.heavy_clients, args.seconds)
        print(" | ".join(row), file=sys.stderr)
        rows.append(row)
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"load average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")


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
    parser.add_argument(
        "--spool-cost",
        type=int,
        metavar="REQUESTS",
        help="Only measure the prediction spool's cost per request (in process), REQUESTS each.",
    )
    parser.add_argument(
        "--fairness",
        action="store_true",
        help="Only measure 2 light clients (1 comment a request) alone and beside heavy ones "
        "(256 comments a request), --seconds each.",
    )
    parser.add_argument("--heavy-chars", type=int, default=10_000, help="Heavy comments' size.")
    parser.add_argument("--heavy-clients", type=int, default=4, help="Heavy clients.")
    parser.add_argument(
        "--fair-batch-chars",
        type=int,
        nargs="+",
        default=[50_000, 10**9],
        help="microbatch_max_chars values to compare (10**9: batches bounded by texts only, as "
        "before requests were split).",
    )
    args = parser.parse_args()
    if args.spool_cost:
        print_spool_cost(args.spool_cost)
        return

    home = args.home.resolve() if args.home else Path(tempfile.mkdtemp(prefix="tg-bench-"))
    if args.model_dir is not None:
        register_saved(home, args.model_dir.resolve())
    elif args.home is None:
        train_champion(home, args.family, args.train_rows)
    if args.fairness:
        print_fairness(home, args)
        return
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
