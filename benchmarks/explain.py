"""Per-token explanations: do they point at an inserted insult or threat, and what do they cost?

On the seeded split of `baselines.py`, fits tfidf-lr, nbsvm, tfidf-svm and complement-nb (default
params) on the training part and, with `--transformer-rows N` (0: none), a transformer
fine-tuned for one epoch on N seeded training rows (int8 ONNX, as served). From the test part it
takes `--comments` seeded benign comments (all six labels 0) and inserts into each, at a seeded
random word boundary, one insult phrase and, in a second copy, one threat phrase (the lists below,
written for this benchmark). Each copy is explained with `toxiguard.models.explain.explain`
(linear-exact for the TF-IDF models; occlusion for the transformer, and for tfidf-lr too, to
compare the methods on one model). Reported per model, method and phrase kind:
  - hit rate: how often the top token for the matching label (insult / threat) overlaps the
    inserted phrase's characters; chance: the mean share of a comment's units that overlap it
    (what a unit picked at random would score);
  - the median probability of that label after insertion, so a miss can be told from a model
    that does not score the phrase at all;
  - latency: the median, over the comments, of one `explain` and one `predict_proba` call for the
    same single comment, and their ratio.
For tfidf-svm it also reports how far the explained logit (the calibration folds' mean calibrated
logit) is from logit(predict_proba). The load average is printed: other work on the machine
slows the wall times.

    python benchmarks/explain.py                    # about 26 minutes on 2 cores at load 2-3.6
    python benchmarks/explain.py --transformer-rows 0 --comments 100
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import logit

from baselines import RESULTS, SHARED_TRAIN, load_average, load_splits, table, texts
from toxiguard.data.validation import label_matrix
from toxiguard.labels import LABELS
from toxiguard.models import ToxicityModel, create_model
from toxiguard.models.explain import Explanation, explain
from toxiguard.settings import OFFLINE_ENVIRONMENT

LINEAR = ("tfidf-lr", "nbsvm", "tfidf-svm", "complement-nb")
PHRASES = {
    "insult": [
        "you are a pathetic idiot",
        "what a stupid moron you are",
        "shut up, you worthless loser",
        "only a brainless clown would write this",
        "you ignorant fool",
        "you are the dumbest person here",
    ],
    "threat": [
        "I will find you and hurt you",
        "I am going to kill you",
        "watch your back, I know where you live",
        "I will beat you up tomorrow",
        "you will regret this, I will make you suffer",
        "I will burn your house down",
    ],
}


def insert_phrase(text: str, phrase: str, rng: np.random.Generator) -> tuple[str, int, int]:
    """Return the text with the phrase at a random word boundary, and the phrase's [begin, end)."""
    boundaries = [0, *(m.end() for m in re.finditer(r"\S+", text))]
    at = int(rng.choice(boundaries))
    if at == 0:
        return f"{phrase} {text}", 0, len(phrase)
    return f"{text[:at]} {phrase}{text[at:]}", at + 1, at + 1 + len(phrase)


def cases(comments: Sequence[str], seed: int) -> list[dict[str, Any]]:
    """Return, for every comment and phrase kind, the text with a phrase inserted and its span."""
    rng = np.random.default_rng(seed)
    made = []
    for comment in comments:
        for kind, phrases in PHRASES.items():
            phrase = str(rng.choice(phrases))
            text, begin, end = insert_phrase(comment, phrase, rng)
            made.append({"kind": kind, "phrase": phrase, "text": text, "span": (begin, end)})
    return made


def overlaps(begin: int, end: int, span: tuple[int, int]) -> bool:
    """Return whether [begin, end) and the span share a character."""
    return begin < span[1] and end > span[0]


def measure(
    name: str, model: ToxicityModel, made: Sequence[dict[str, Any]], method: str
) -> list[dict[str, Any]]:
    """Return one row per phrase kind: hit rate, chance, probability, latencies."""
    explain(model, made[0]["text"], method=method)  # warm up (first calls build lookups)
    model.predict_proba([made[0]["text"]])
    records: dict[str, list[dict[str, Any]]] = {kind: [] for kind in PHRASES}
    started = time.perf_counter()
    for i, case in enumerate(made):
        column = LABELS.index(case["kind"])
        before = time.perf_counter()
        model.predict_proba([case["text"]])
        between = time.perf_counter()
        explanation: Explanation = explain(model, case["text"], method=method)
        after = time.perf_counter()
        top = explanation.top_tokens(case["kind"], k=1)
        units = explanation.tokens
        inside = [overlaps(u.begin, u.end, case["span"]) for u in units]
        total = explanation.baseline + explanation.contributions.sum(axis=0)
        probability = explanation.probabilities
        unsaturated = (probability > 1e-9) & (probability < 1 - 1e-9)
        records[case["kind"]].append(
            {
                "hit": bool(top) and overlaps(top[0][0].begin, top[0][0].end, case["span"]),
                "chance": sum(inside) / len(units),
                "units": len(units),
                "probability": float(explanation.probabilities[column]),
                "explain_s": after - between,
                "predict_s": between - before,
                # linear-exact only: |explained logit - logit(predict_proba)|, over the labels
                "logit_gap": float(np.abs(total - logit(probability))[unsaturated].max(initial=0.0))
                if explanation.method == "linear-exact"
                else None,
                "method": explanation.method,
            }
        )
        if (i + 1) % 100 == 0:
            rate = (i + 1) / (time.perf_counter() - started)
            print(f"  {name}: {i + 1}/{len(made)} explained ({rate:.1f}/s)", flush=True)
    rows = []
    for kind, found in records.items():
        explain_s = statistics.median(r["explain_s"] for r in found)
        predict_s = statistics.median(r["predict_s"] for r in found)
        gaps = [r["logit_gap"] for r in found if r["logit_gap"] is not None]
        rows.append(
            {
                "model": name,
                "method": found[0]["method"],
                "kind": kind,
                "comments": len(found),
                "hit_rate": float(np.mean([r["hit"] for r in found])),
                "chance": float(np.mean([r["chance"] for r in found])),
                "median_units": statistics.median(r["units"] for r in found),
                "median_probability": statistics.median(r["probability"] for r in found),
                "explain_ms": explain_s * 1e3,
                "predict_ms": predict_s * 1e3,
                "ratio": explain_s / predict_s,
                "logit_gap_median": statistics.median(gaps) if gaps else None,
                "logit_gap_max": max(gaps) if gaps else None,
                "load": load_average(),
            }
        )
    return rows


def fit_transformer(train: pd.DataFrame, validation: pd.DataFrame, rows: int) -> ToxicityModel:
    """Return a transformer fine-tuned for one epoch on `rows` seeded training rows."""
    sample = train.sample(n=min(rows, len(train)), random_state=0)
    held = validation.sample(n=min(400, len(validation)), random_state=0)
    # The best recipe of benchmarks/README (lr 1e-4, sqrt-balanced pos_weight), one epoch; int8
    # is kept whatever its parity on 400 rows: it is what serving runs, and what is timed here.
    model = create_model(
        "transformer",
        epochs=1,
        learning_rate=1e-4,
        pos_weight="sqrt-balanced",
        max_auc_loss=1.0,
        progress=False,
    )
    return model.fit(
        texts(sample), label_matrix(sample), validation=(texts(held), label_matrix(held))
    )


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    """Return the rows as a markdown table."""
    header = [
        "model",
        "method",
        "phrase",
        "comments",
        "top token in phrase",
        "chance",
        "median units",
        "median p(label)",
        "explain ms",
        "predict ms",
        "explain / predict",
        "load",
    ]
    body = [
        [
            r["model"],
            r["method"],
            r["kind"],
            str(r["comments"]),
            f"{r['hit_rate']:.1%}",
            f"{r['chance']:.1%}",
            f"{r['median_units']:.0f}",
            f"{r['median_probability']:.2f}",
            f"{r['explain_ms']:.1f}",
            f"{r['predict_ms']:.1f}",
            f"{r['ratio']:.1f}x",
            r["load"],
        ]
        for r in rows
    ]
    return table(header, body)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print and save the table; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=SHARED_TRAIN, help="labelled train file")
    parser.add_argument("--models", nargs="+", default=list(LINEAR), choices=LINEAR)
    parser.add_argument("--comments", type=int, default=200, help="benign test comments")
    parser.add_argument(
        "--transformer-rows", type=int, default=3000, help="transformer training rows (0: none)"
    )
    parser.add_argument(
        "--transformer-comments", type=int, default=100, help="of the comments, for the transformer"
    )
    parser.add_argument("--seed", type=int, default=0, help="comments, phrases and positions")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for the results")
    args = parser.parse_args(argv)
    for key, value in OFFLINE_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    logging.basicConfig(level=logging.WARNING)
    splits = load_splits(args.data)
    benign = splits.test[(label_matrix(splits.test) == 0).all(axis=1)]
    comments = texts(benign.sample(n=min(args.comments, len(benign)), random_state=args.seed))
    made = cases(comments, args.seed)
    print(f"{len(comments)} benign test comments, {len(made)} cases; load {load_average()}")
    rows: list[dict[str, Any]] = []
    for family in args.models:
        started = time.perf_counter()
        model = create_model(family).fit(texts(splits.train), label_matrix(splits.train))
        print(f"{family}: fitted in {time.perf_counter() - started:.0f} s", flush=True)
        rows += measure(family, model, made, "auto")
        if family == "tfidf-lr":
            rows += measure(family, model, made, "occlusion")
        print(markdown(rows[-2:]), flush=True)
        del model
    if args.transformer_rows > 0:
        started = time.perf_counter()
        model = fit_transformer(splits.train, splits.validation, args.transformer_rows)
        print(f"transformer: fitted in {time.perf_counter() - started:.0f} s", flush=True)
        rows += measure("transformer", model, made[: 2 * args.transformer_comments], "auto")
    text = markdown(rows)
    print(text)
    svm = [r for r in rows if r["model"] == "tfidf-svm"]
    for r in svm:
        print(
            f"tfidf-svm ({r['kind']}): |explained logit - logit(p)| median "
            f"{r['logit_gap_median']:.3f}, max {r['logit_gap_max']:.3f}"
        )
    print(f"load average at the end: {load_average()}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "explain.md").write_text(text + "\n", encoding="utf-8")
    payload = {"comments": len(comments), "phrases": PHRASES, "rows": rows}
    (args.out / "explain.json").write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
