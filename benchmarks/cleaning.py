"""Which text cleaning steps help the TF-IDF models? An ablation with tfidf-lr.

On the fixed split of `baselines.py`, fits tfidf-lr (default params) with: every candidate step
on ("all"), each step left out in turn ("all - step"), no cleaning ("none") and the current
defaults ("default"). Prints validation and test ROC-AUC (mean over the six labels), the change
against "all", and what each step costs in milliseconds per 1,000 comments (cleaning alone, on
the training part). Steps are kept when leaving them out lowers validation ROC-AUC, or when they
are neutral and cheap; the test column is reported, not used to decide.

    python benchmarks/cleaning.py
    python benchmarks/cleaning.py --configs all none "all - repeats"
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from baselines import RESULTS, SHARED_TRAIN, load_average, load_splits, table, texts
from toxiguard.data.splits import Splits
from toxiguard.data.validation import label_matrix
from toxiguard.features.text import CLEANING_STEPS, DEFAULT_STEPS, clean_texts
from toxiguard.labels import LABELS
from toxiguard.models import create_model


def configurations() -> dict[str, list[str]]:
    """Return the ablation's step lists by name: all, all minus each step, none, default."""
    everything = list(CLEANING_STEPS)
    configs = {"all": everything}
    configs |= {f"all - {step}": [s for s in everything if s != step] for step in everything}
    configs |= {"none": [], "default": list(DEFAULT_STEPS)}
    return configs


def mean_auc(truth: Any, proba: Any) -> float:
    """Return the mean ROC-AUC over the six labels."""
    return float(np.mean([roc_auc_score(truth[:, j], proba[:, j]) for j in range(len(LABELS))]))


def step_costs(comments: Sequence[str]) -> dict[str, float]:
    """Return each step's cleaning time in milliseconds per 1,000 comments."""
    costs = {}
    for step in CLEANING_STEPS:
        started = time.process_time()
        clean_texts(comments, [step])
        costs[step] = (time.process_time() - started) * 1e6 / len(comments)
    return costs


def score(steps: list[str], splits: Splits) -> dict[str, Any]:
    """Return validation and test ROC-AUC of tfidf-lr fitted with these cleaning steps."""
    started = time.perf_counter()
    model = create_model("tfidf-lr", cleaning=steps)
    model.fit(texts(splits.train), label_matrix(splits.train))
    return {
        "steps": steps,
        "validation_auc": mean_auc(
            label_matrix(splits.validation), model.predict_proba(texts(splits.validation))
        ),
        "test_auc": mean_auc(label_matrix(splits.test), model.predict_proba(texts(splits.test))),
        "seconds": time.perf_counter() - started,
        "load": load_average(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ablation; print and save the table; return the exit status."""
    configs = configurations()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=SHARED_TRAIN, help="labelled train file")
    parser.add_argument("--configs", nargs="+", default=list(configs), choices=list(configs))
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for the results")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    splits = load_splits(args.data)
    costs = step_costs(texts(splits.train))
    results: dict[str, dict[str, Any]] = {}
    for name in args.configs:
        results[name] = score(configs[name], splits)
        row = results[name]
        print(f"{name}: val {row['validation_auc']:.4f} test {row['test_auc']:.4f}", flush=True)
    base = results.get("all")
    rows = []
    for name, row in results.items():
        left_out = name.removeprefix("all - ") if name.startswith("all - ") else None
        rows.append(
            [
                name,
                f"{row['validation_auc']:.4f}",
                f"{row['validation_auc'] - base['validation_auc']:+.4f}" if base else "",
                f"{row['test_auc']:.4f}",
                f"{row['test_auc'] - base['test_auc']:+.4f}" if base else "",
                f"{costs[left_out]:.0f}" if left_out else "",
                f"{row['seconds']:.0f}",
            ]
        )
    header = [
        "steps",
        "val ROC-AUC",
        "Δ val vs all",
        "test ROC-AUC",
        "Δ test vs all",
        "step ms / 1k comments",
        "fit+score s",
    ]
    text = table(header, rows)
    print(text)
    print(f"load average at the end: {load_average()}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cleaning.md").write_text(text + "\n", encoding="utf-8")
    payload = {"costs_ms_per_1k": costs, "results": results}
    (args.out / "cleaning.json").write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
