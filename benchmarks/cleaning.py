"""Which text cleaning steps help the TF-IDF models, on clean and on obfuscated comments?

On the fixed split of `baselines.py`, fits a TF-IDF family (default params; tfidf-lr unless
`--models` says otherwise) once per configuration of cleaning steps and scores it on the
validation part as it is and under every perturbation of `toxiguard.data.perturbations`
("1d10t", "y o u  s u c k", Cyrillic look-alikes, ...; `training.robustness.robustness_report`,
seed 0, one scoring call), and on the test part as it is.

Configurations: the ablation of every candidate step ("all", each step left out in turn as
"all - step", "none", "default": the current `DEFAULT_STEPS`); the defaults without the
normalisation steps against obfuscation (`NEW_STEPS`: "default - new"), and those of them not
in the defaults added one at a time ("default + step") and together ("default + new"); and
augmentation during fitting ("... + augment": perturbed copies of a seeded `--augment-share` of
the training comments, each under a random perturbation, added to the training part).

Two tables: clean validation and test ROC-AUC (mean over the six labels) against "all", with
each step's cost alone in ms per 1,000 comments of the training part; and mean validation
ROC-AUC under each perturbation. A step is kept when it helps (clean, or perturbed without
costing clean ROC-AUC beyond noise) or is neutral and cheap; the test column is reported, not
used to decide.

    python benchmarks/cleaning.py                                 # every configuration
    python benchmarks/cleaning.py --configs all none "all - repeats"
    python benchmarks/cleaning.py --configs default "default + new" --models tfidf-lr nbsvm
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from baselines import RESULTS, SHARED_TRAIN, load_average, load_splits, table, texts
from toxiguard.data.perturbations import PERTURBATIONS, augment
from toxiguard.data.splits import Splits
from toxiguard.data.validation import label_matrix
from toxiguard.features.text import CLEANING_STEPS, DEFAULT_STEPS, clean_texts
from toxiguard.models import create_model
from toxiguard.models.metrics import mean_roc_auc
from toxiguard.training.robustness import robustness_report

# The normalisation steps against obfuscation, measured as additions to the defaults.
NEW_STEPS = ("zero_width", "homoglyphs", "despace", "punctuation_inside", "leetspeak")
SEED = 0


@dataclass(frozen=True)
class Config:
    """Cleaning steps to fit with, and the share of training comments added perturbed."""

    steps: tuple[str, ...]
    augment: float = 0.0


def configurations(augment_share: float) -> dict[str, Config]:
    """Return the configurations by name (module docstring)."""
    everything = tuple(CLEANING_STEPS)
    default = tuple(DEFAULT_STEPS)
    added = tuple(step for step in NEW_STEPS if step not in default)
    with_new = (*default, *added)
    configs = {"all": Config(everything)}
    configs |= {f"all - {s}": Config(tuple(x for x in everything if x != s)) for s in everything}
    configs |= {"none": Config(()), "default": Config(default)}
    configs |= {"default - new": Config(tuple(s for s in default if s not in NEW_STEPS))}
    configs |= {f"default + {step}": Config((*default, step)) for step in added}
    configs |= {
        "default + new": Config(with_new),
        "default + augment": Config(default, augment_share),
        "default + new + augment": Config(with_new, augment_share),
    }
    return configs


def step_costs(comments: Sequence[str]) -> dict[str, float]:
    """Return each step's cleaning time in milliseconds per 1,000 comments."""
    costs = {}
    for step in CLEANING_STEPS:
        started = time.process_time()
        clean_texts(comments, [step])
        costs[step] = (time.process_time() - started) * 1e6 / len(comments)
    return costs


def score(family: str, config: Config, splits: Splits) -> dict[str, Any]:
    """Return clean validation and test ROC-AUC, and validation ROC-AUC under each
    perturbation, of the family fitted with this configuration."""
    started = time.perf_counter()
    train_texts, train_labels = texts(splits.train), label_matrix(splits.train)
    if config.augment:
        train_texts, train_labels = augment(train_texts, train_labels, config.augment, SEED)
    model = create_model(family, cleaning=list(config.steps))
    model.fit(train_texts, train_labels)
    fitted = time.perf_counter()
    report = robustness_report(
        model.predict_proba, texts(splits.validation), label_matrix(splits.validation), SEED
    )
    return {
        "family": family,
        "steps": list(config.steps),
        "augment": config.augment,
        "validation_auc": report.clean_auc,
        "perturbed_auc": report.perturbed,
        "test_auc": mean_roc_auc(
            label_matrix(splits.test), model.predict_proba(texts(splits.test))
        ),
        "fit_s": fitted - started,
        "seconds": time.perf_counter() - started,
        "load": load_average(),
    }


def ablation_table(results: dict[str, dict[str, Any]], costs: dict[str, float], family: str) -> str:
    """Return the clean-data table of one family: ROC-AUC against "all", each step's cost."""
    base = results.get(f"{family}: all")
    rows = []
    for key, row in results.items():
        if row["family"] != family:
            continue
        name = key.removeprefix(f"{family}: ")
        step = name.removeprefix("all - ").removeprefix("default + ")
        rows.append(
            [
                name,
                f"{row['validation_auc']:.4f}",
                f"{row['validation_auc'] - base['validation_auc']:+.4f}" if base else "",
                f"{row['test_auc']:.4f}",
                f"{row['test_auc'] - base['test_auc']:+.4f}" if base else "",
                f"{costs[step]:.0f}" if step in costs else "",
                f"{row['seconds']:.0f}",
            ]
        )
    header = ["steps", "val ROC-AUC", "Δ val vs all", "test ROC-AUC", "Δ test vs all"]
    return table([*header, "step ms / 1k comments", "fit+score s"], rows)


def robustness_table(results: dict[str, dict[str, Any]], costs: dict[str, float]) -> str:
    """Return validation ROC-AUC, clean and under each perturbation, of every result."""
    rows = []
    for key, row in results.items():
        family, name = key.split(": ", 1)
        base = results.get(f"{family}: default")
        perturbed = row["perturbed_auc"]
        defined = [auc for auc in perturbed.values() if auc is not None]
        step = name.removeprefix("default + ")
        rows.append(
            [
                family,
                name,
                f"{row['validation_auc']:.4f}",
                f"{row['validation_auc'] - base['validation_auc']:+.4f}" if base else "",
                *(f"{perturbed[p]:.4f}" for p in PERTURBATIONS),
                f"{sum(defined) / len(defined):.4f}",
                f"{costs[step]:.0f}" if step in costs and step in NEW_STEPS else "",
                f"{row['fit_s']:.0f}",
                row["load"].split(" on ")[0],
            ]
        )
    header = ["model", "steps", "val clean", "Δ clean vs default", *PERTURBATIONS]
    return table([*header, "mean perturbed", "step ms / 1k", "fit s", "load"], rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen configurations; print and save the tables; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=SHARED_TRAIN, help="labelled train file")
    parser.add_argument("--models", nargs="+", default=["tfidf-lr"], help="TF-IDF families")
    parser.add_argument(
        "--augment-share", type=float, default=0.2, help="share of training comments augmented"
    )
    parser.add_argument("--configs", nargs="+", help="configuration names (default: all)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for the results")
    args = parser.parse_args(argv)
    configs = configurations(args.augment_share)
    unknown = [name for name in args.configs or () if name not in configs]
    if unknown:
        parser.error(f"unknown configuration(s) {unknown}; known: {list(configs)}")
    logging.basicConfig(level=logging.WARNING)
    splits = load_splits(args.data)
    costs = step_costs(texts(splits.train))
    print("step ms / 1k comments:", {k: round(v, 1) for k, v in costs.items()}, flush=True)
    results: dict[str, dict[str, Any]] = {}
    for family in args.models:
        for name in args.configs or list(configs):
            row = score(family, configs[name], splits)
            results[f"{family}: {name}"] = row
            worst = min(row["perturbed_auc"].items(), key=lambda item: item[1] or 1.0)
            print(
                f"{family}: {name}: val {row['validation_auc']:.4f} test {row['test_auc']:.4f}"
                f" worst perturbed {worst[0]} {worst[1]:.4f} ({row['seconds']:.0f} s)",
                flush=True,
            )
    tables = [ablation_table(results, costs, family) for family in args.models]
    text = "\n\n".join([*tables, robustness_table(results, costs)])
    print(text)
    print(f"load average at the end: {load_average()}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cleaning.md").write_text(text + "\n", encoding="utf-8")
    payload = {"costs_ms_per_1k": costs, "results": results}
    (args.out / "cleaning.json").write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
