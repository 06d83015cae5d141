"""Batch scoring (`toxiguard score`): peak memory and speed on a 1M-row file, streamed in chunks.

A tfidf-lr model is fitted on 20,000 real comments of the shared data; a CSV of N comments
(the shared comments repeated, with their `id` made unique) is written; then, each in a fresh
process so that its peak RSS is its own:
  - `read`: only reading the whole file into one frame (`read_comments`), what batch scoring
    did before it streamed: the memory that a whole-file scorer needs before scoring anything;
  - `score chunk=<k>`: `score_file` on the same file, chunk by chunk, to CSV.
Peak RSS is the child's `ru_maxrss`; times are wall seconds; the load average is recorded.

    python benchmarks/scoring.py                       # 1,000,000 rows (about 15 min on 2 cores)
    python benchmarks/scoring.py --rows 200000 --chunks 2000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SHARED_TRAIN = ROOT.parent / "shared" / "data" / "jigsaw" / "train.csv.gz"
RESULTS = ROOT / "benchmarks" / "results"

_CHILD = """
import sys, time, json, resource
from toxiguard.models.package import ModelPackage
mode, model_dir, source, target, chunk = sys.argv[1:6]
started = time.perf_counter()
if mode == "read":
    from toxiguard.data.readers import read_comments
    rows = len(read_comments(source))
else:
    from toxiguard.serving.batch_scoring import score_file
    rows = score_file(ModelPackage.load(model_dir), source, target, chunk_size=int(chunk))
print(json.dumps({"rows": rows, "seconds": time.perf_counter() - started,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Return a markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def load() -> str:
    """Return the 1-minute load average and the CPU count, for the record."""
    return f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"


def write_input(frame: pd.DataFrame, rows: int, path: Path) -> int:
    """Write `rows` comments (the frame repeated, ids made unique) as CSV; return its bytes."""
    written = 0
    with path.open("w", encoding="utf-8", newline="") as handle:
        while written < rows:
            part = frame.iloc[: rows - written].copy()
            part["id"] = [f"r{written + i}" for i in range(len(part))]
            part.to_csv(handle, header=written == 0, index=False)
            written += len(part)
    return path.stat().st_size


def run_child(args: Sequence[str]) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; return what it printed."""
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"child failed: {done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    """Fit, write the file, measure, print and save the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunks", type=int, nargs="+", default=[2000, 10000])
    options = parser.parse_args()

    from toxiguard.data.validation import label_matrix, load_dataset
    from toxiguard.labels import TEXT_COLUMN
    from toxiguard.models import create_model
    from toxiguard.models.package import ModelPackage

    frame = load_dataset(SHARED_TRAIN).frame
    train = frame.sample(n=20_000, random_state=0)
    model = create_model("tfidf-lr")
    model.fit(train[TEXT_COLUMN].tolist(), label_matrix(train))
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        model_dir = work / "model"
        ModelPackage(model).save(model_dir)
        source = work / "comments.csv"
        size = write_input(frame.loc[:, ["id", TEXT_COLUMN]], options.rows, source)
        print(f"input: {options.rows:,} rows, {size / 2**20:,.0f} MiB; load {load()}")
        runs = [("read", "0")] + [("score", str(chunk)) for chunk in options.chunks]
        for mode, chunk in runs:
            measured = run_child([mode, str(model_dir), str(source), str(work / "out.csv"), chunk])
            measured.update(mode=mode, chunk=int(chunk), load=load(), input_mib=size / 2**20)
            results.append(measured)
            print(measured, flush=True)
    rows = [
        [
            "read whole file" if r["mode"] == "read" else f"score_file, chunk {r['chunk']:,}",
            f"{r['rows']:,}",
            f"{r['peak_rss_mb']:,.0f}",
            f"{r['seconds']:,.1f}",
            f"{r['rows'] / r['seconds']:,.0f}" if r["mode"] == "score" else "-",
            r["load"],
        ]
        for r in results
    ]
    print(table(["run", "rows", "peak RSS MiB", "seconds", "rows/s", "load"], rows))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scoring.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
