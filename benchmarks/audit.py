"""How biased and how robust is each family? The audit of `toxiguard.training.audit`, per family.

On the fixed split of `baselines.py`, fits each family (default params, or the cleaning steps
given) and audits it on the test split: final bias score on the test comments and on the
templated identity sentences, the three worst subgroups (lowest of their subgroup, BPSN and BNSP
AUC) with their three AUCs, the neutral-sentence gap, and the mean ROC-AUC clean and under each
obfuscation. Compare configurations by running it twice, e.g. before and after a change of the
cleaning steps:

    python benchmarks/audit.py                                   # about 4 minutes on 2 cores
    python benchmarks/audit.py --models nbsvm --cleaning unicode,urls,ips,lowercase,repeats
    python benchmarks/audit.py --models transformer blend        # about an hour on 2 cores
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

from baselines import RESULTS, SHARED_TRAIN, load_average, load_splits, table, texts
from toxiguard.data.augmentation import augment_training
from toxiguard.data.validation import label_matrix
from toxiguard.models import ToxicityModel, create_model
from toxiguard.models.metrics import mean_roc_auc
from toxiguard.settings import Settings
from toxiguard.training.audit import AuditReport, audit_model
from toxiguard.training.evaluation import tune_thresholds

FAMILIES = ("tfidf-lr", "nbsvm", "tfidf-svm")
LINEAR = ("tfidf-lr", "nbsvm", "tfidf-svm", "complement-nb")


def fit(
    family: str,
    splits: Any,
    cleaning: list[str] | None,
    augmentations: Sequence[str],
) -> ToxicityModel:
    """Return the family fitted on the training part (with these cleaning steps if linear, and
    the training part augmented with these kinds)."""
    params: dict[str, Any] = {}
    if cleaning is not None and family in LINEAR:
        params["cleaning"] = cleaning
    model = create_model(family, {"seed": 42}, **params)
    validation = (texts(splits.validation), label_matrix(splits.validation))
    train_texts, train_truth = augment_training(
        texts(splits.train), label_matrix(splits.train), augmentations, 42
    )
    model.fit(train_texts, train_truth, validation=validation)
    return model


def audit_family(
    family: str,
    splits: Any,
    cleaning: list[str] | None,
    augmentations: Sequence[str],
    rows: int,
) -> tuple[AuditReport, dict[str, Any]]:
    """Return the family's audit on the test split and its timings and test ROC-AUC."""
    started = time.perf_counter()
    model = fit(family, splits, cleaning, augmentations)
    fit_s = time.perf_counter() - started
    validation_truth = label_matrix(splits.validation)
    validation_scores = model.predict_proba(texts(splits.validation))
    thresholds = tune_thresholds(validation_truth, validation_scores)
    started = time.perf_counter()
    test_texts, truth = texts(splits.test), label_matrix(splits.test)
    report = audit_model(
        model.predict_proba, test_texts, truth, thresholds, seed=42, robustness_rows=rows
    )
    return report, {
        "family": family,
        "fit_s": fit_s,
        "audit_s": time.perf_counter() - started,
        "test_roc_auc": report.robustness.clean_auc,
        "full_test_roc_auc": mean_roc_auc(truth, model.predict_proba(test_texts)),
        "validation_roc_auc": mean_roc_auc(validation_truth, validation_scores),
    }


def _f(value: float | None, digits: int = 4) -> str:
    """Return a number for the table, 'n/a' for None."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown(results: Sequence[tuple[AuditReport, dict[str, Any]]]) -> str:
    """Return the bias table and the robustness table, one row per family."""
    bias_rows = []
    for report, info in results:
        worst = "; ".join(
            f"{g.subgroup} ({_f(g.subgroup_auc, 3)}/{_f(g.bpsn_auc, 3)}/{_f(g.bnsp_auc, 3)})"
            for g in report.bias_test.worst(3)
        )
        bias_rows.append(
            [
                info["family"],
                _f(info["validation_roc_auc"]),
                _f(info["full_test_roc_auc"]),
                _f(report.bias_test.final_score),
                _f(report.bias_templates.final_score),
                worst,
                f"{report.neutral.gap:.3f} ({report.neutral.highest} - {report.neutral.lowest})",
                ", ".join(report.neutral.above_threshold) or "none",
            ]
        )
    names = list(results[0][0].robustness.perturbed) if results else []
    robust_rows = [
        [
            info["family"],
            _f(report.robustness.clean_auc),
            *(_f(report.robustness.perturbed[name]) for name in names),
            f"{report.robustness.worst_name} {_f(report.robustness.worst_auc)}",
        ]
        for report, info in results
    ]
    return "\n\n".join(
        [
            table(
                [
                    "model",
                    "val ROC-AUC",
                    "test ROC-AUC",
                    "final bias (test)",
                    "final bias (templates)",
                    "worst 3 subgroups, test (subgroup/BPSN/BNSP AUC)",
                    "neutral gap (highest - lowest)",
                    "above toxic threshold",
                ],
                bias_rows,
            ),
            table(["model", "clean", *names, "worst"], robust_rows),
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Audit each family on the benchmark split; print and save the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(SHARED_TRAIN))
    parser.add_argument("--models", nargs="+", default=list(FAMILIES))
    parser.add_argument("--cleaning", help="comma-separated cleaning steps for the linear families")
    parser.add_argument(
        "--augment",
        nargs="*",
        default=Settings.model_fields["training_augmentations"].default,
        help="training augmentations (default: training's; none: --augment with no value)",
    )
    parser.add_argument("--rows", type=int, default=2000, help="test comments perturbed")
    parser.add_argument("--name", default="audit", help="results file name")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    cleaning = args.cleaning.split(",") if args.cleaning is not None else None
    splits = load_splits(args.data)
    before = load_average()
    results = []
    for family in args.models:
        report, info = audit_family(family, splits, cleaning, args.augment, args.rows)
        print(
            f"{family}: fit {info['fit_s']:.0f} s, audit {info['audit_s']:.0f} s",
            file=sys.stderr,
        )
        results.append((report, info))
    text = (
        markdown(results)
        + f"\n\nload average {before} before, {load_average()} after; cleaning "
        + (args.cleaning or "default")
        + "; augmentation "
        + (", ".join(args.augment) or "none")
    )
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.md").write_text(text + "\n")
    (RESULTS / f"{args.name}.json").write_text(
        json.dumps([{**info, "audit": report.to_dict()} for report, info in results], indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
