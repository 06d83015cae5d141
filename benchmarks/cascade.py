"""The cascade family: how much of the slow model's quality it keeps at what share escalated.

On the seeded split of the shared data that `toxiguard train` uses, fits a cascade of a fast
and a slow family (default: complement-nb before nbsvm, both CPU-cheap; the production
configuration is nbsvm before the transformer blend, which needs the transformer trained), and
prints, for every tail share the fit sweeps: the share of comments escalated and the mean
ROC-AUC on validation (what the band is chosen on) and on test, next to the fast and slow
models alone; then the band chosen and its in-process comments/s against each stage alone.

    python benchmarks/cascade.py
    python benchmarks/cascade.py --fast nbsvm --slow tfidf-svm
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

from toxiguard.data.splits import split_dataset
from toxiguard.data.validation import label_matrix, load_dataset
from toxiguard.models import create_model
from toxiguard.models.base import ToxicityModel
from toxiguard.models.cascade import TAIL_SHARES, CascadeModel, band_edges, in_band
from toxiguard.models.metrics import mean_roc_auc
from toxiguard.training.steps import texts_of

ROOT = Path(__file__).resolve().parents[1]
SHARED_TRAIN = ROOT.parent / "shared" / "data" / "jigsaw" / "train.csv.gz"


def comments_per_second(model: ToxicityModel, texts: list[str], repetitions: int) -> float:
    """Return the median comments/s of `predict_proba` over the texts in batches of 64."""
    rates = []
    for _ in range(repetitions):
        started = time.perf_counter()
        for start in range(0, len(texts), 64):
            model.predict_proba(texts[start : start + 64])
        rates.append(len(texts) / (time.perf_counter() - started))
    return statistics.median(rates)


def main() -> None:
    """Fit the cascade and print its curve, the chosen band and its speed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(SHARED_TRAIN))
    parser.add_argument("--fast", default="complement-nb")
    parser.add_argument("--slow", default="nbsvm")
    parser.add_argument("--max-auc-loss", type=float, default=0.001)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    frame = load_dataset(args.data).frame
    splits = split_dataset(frame, seed=args.seed, validation_size=0.1, test_size=0.1)
    model = create_model("cascade", fast=args.fast, slow=args.slow, max_auc_loss=args.max_auc_loss)
    assert isinstance(model, CascadeModel)
    validation = (texts_of(splits.validation), label_matrix(splits.validation))
    started = time.perf_counter()
    model.fit(texts_of(splits.train), label_matrix(splits.train), validation=validation)
    print(f"fitted {args.fast} -> {args.slow} cascade in {time.perf_counter() - started:.0f} s")

    texts, truth = texts_of(splits.test), label_matrix(splits.test)
    stages = model.fitted_stages()
    fast_val = stages["fast"].predict_proba(validation[0])
    fast_test, slow_test = stages["fast"].predict_proba(texts), stages["slow"].predict_proba(texts)
    print(f"\n{args.fast} alone: test mean ROC-AUC {mean_roc_auc(truth, fast_test):.4f}")
    print(f"{args.slow} alone: test mean ROC-AUC {mean_roc_auc(truth, slow_test):.4f}\n")
    print("| tail share | escalated (val) | ROC-AUC (val) | escalated (test) | ROC-AUC (test) |")
    print("|---|---|---|---|---|")
    for share, point in zip(TAIL_SHARES, model.curve_, strict=False):
        low, high = band_edges(fast_val, validation[1], share)
        up = np.asarray(in_band(fast_test, low, high).any(axis=1), dtype=bool)
        auc = mean_roc_auc(truth, np.where(up[:, None], slow_test, fast_test)) or 0.0
        chosen = " (chosen)" if share == model.tail_share_ else ""
        print(
            f"| {share}{chosen} | {point['escalated']:.1%} | {point['auc']:.4f} "
            f"| {up.mean():.1%} | {auc:.4f} |"
        )
    print(
        f"\nchosen band: {model.validation_escalated_:.1%} of validation comments escalated, "
        f"test: {model.escalated_share(texts):.1%}, test mean ROC-AUC "
        f"{mean_roc_auc(truth, model.predict_proba(texts)):.4f}"
    )
    sample = texts[:2048]
    print("\n| model | comments/s (batches of 64, in process) |\n|---|---|")
    for name, member in (("fast", stages["fast"]), ("slow", stages["slow"]), ("cascade", model)):
        print(f"| {name} | {comments_per_second(member, sample, args.repetitions):.0f} |")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
