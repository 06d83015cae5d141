"""The steps of training: prepare the data; per family fit, evaluate, package, register, gate."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from matplotlib.figure import Figure

from toxiguard.data.augmentation import augment_training
from toxiguard.data.demo import is_demo_corpus
from toxiguard.data.splits import Splits, save_splits, split_dataset
from toxiguard.data.trainability import dataset_problems, split_problems
from toxiguard.data.validation import Dataset, label_matrix, load_dataset, text_hashes
from toxiguard.errors import DataValidationError
from toxiguard.labels import TEXT_COLUMN
from toxiguard.models import ToxicityModel, create_model
from toxiguard.models.blend import DEFAULT_MEMBERS, BlendModel
from toxiguard.models.cascade import CascadeModel
from toxiguard.models.metrics import mean_roc_auc
from toxiguard.models.package import ModelPackage
from toxiguard.models.reference import build_reference
from toxiguard.models.tfidf.linear import LinearTextModel
from toxiguard.registry.runs import log_model_run
from toxiguard.settings import Settings
from toxiguard.training.audit import AuditReport, audit_model, audit_tables, plot_subgroup_aucs
from toxiguard.training.evaluation import (
    evaluate,
    flat_metrics,
    plot_escalation_curve,
    plot_f1_bars,
    plot_pr_curves,
    tune_thresholds,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedData:
    """A validated dataset and its saved, fingerprinted split."""

    dataset: Dataset
    splits: Splits
    splits_dir: Path


@dataclass(frozen=True)
class Evaluation:
    """Validation and test reports of one fitted model, with thresholds tuned on validation,
    and its bias and robustness audit on the test split."""

    validation: dict[str, Any]
    test: dict[str, Any]
    figures: dict[str, Figure]
    thresholds: npt.NDArray[np.float64]
    validation_probabilities: npt.NDArray[np.float64]
    test_probabilities: npt.NDArray[np.float64]
    audit: AuditReport | None = None

    @property
    def test_mean_roc_auc(self) -> float:
        """Return the mean test ROC-AUC, the score that promotion compares."""
        return float(self.test["mean_roc_auc"])


def prepare_data(data_path: str | Path, settings: Settings) -> PreparedData:
    """Return the validated dataset and its seeded split, saved as parquet under the home.

    Raises DataValidationError, before anything is fitted or registered, when the data cannot
    train a model (`data.trainability`: too few rows, a label of one class only).
    """
    dataset = load_dataset(data_path)
    for rule, count in dataset.dropped.items():
        logger.info("dropped %d rows by rule: %s", count, rule)
    sizes = {"validation_size": settings.validation_size, "test_size": settings.test_size}
    problems = dataset_problems(dataset.frame, dataset.source, **sizes)
    if problems:
        raise DataValidationError(problems)
    splits = split_dataset(dataset.frame, seed=settings.seed, **sizes)
    problems = split_problems(splits, dataset.source)
    if problems:
        raise DataValidationError(problems)
    splits_dir = save_splits(splits, settings.splits_dir / splits.fingerprint[:16])
    logger.info(
        "split %d rows into %d train / %d validation / %d test (fingerprint %s)",
        len(dataset.frame),
        len(splits.train),
        len(splits.validation),
        len(splits.test),
        splits.fingerprint[:12],
    )
    return PreparedData(dataset=dataset, splits=splits, splits_dir=splits_dir)


def texts_of(frame: Any) -> list[str]:
    """Return the comment texts of a data frame as a list of str."""
    return [str(text) for text in frame[TEXT_COLUMN].tolist()]


def best_tfidf(fitted: Mapping[str, ToxicityModel], splits: Splits) -> list[str]:
    """Return the job's fitted TF-IDF models, best validation mean ROC-AUC first."""
    tfidf = {name: model for name, model in fitted.items() if isinstance(model, LinearTextModel)}
    texts, truth = texts_of(splits.validation), label_matrix(splits.validation)

    def validation_auc(name: str) -> float:
        return mean_roc_auc(truth, tfidf[name].predict_proba(texts)) or 0.0

    return sorted(sorted(tfidf), key=validation_auc, reverse=True)


def blend_members(
    fitted: Mapping[str, ToxicityModel], splits: Splits, tfidf_members: int
) -> list[str]:
    """Return the default blend of a job: the transformer and the job's `tfidf_members` best
    TF-IDF models by validation mean ROC-AUC (`tfidf-lr` when the job fitted none)."""
    best = best_tfidf(fitted, splits)[:tfidf_members]
    if not best:
        return list(DEFAULT_MEMBERS)
    logger.info("blend: members transformer and %s (best TF-IDF on validation)", ", ".join(best))
    return ["transformer", *best]


def _cascade_with_fitted(
    params: dict[str, Any], splits: Splits, fitted: Mapping[str, ToxicityModel]
) -> dict[str, Any]:
    """Return a cascade's params whose stages this job fitted are passed in fitted (`prefit`).

    A stage named by a family the job fitted takes that model; unnamed, the fast stage is the
    job's best TF-IDF model and the slow one its blend, where the job has them.
    """
    best = best_tfidf(fitted, splits)
    defaults = {"fast": best[0] if best else None, "slow": BlendModel.family}
    prefit = []
    for stage, default in defaults.items():
        name = params.get(stage, default)
        if isinstance(name, str) and name in fitted:
            params[stage] = fitted[name]
            prefit.append(stage)
            logger.info("cascade: %s stage %s, fitted in this job", stage, name)
    return {**params, "prefit": prefit}


def model_defaults(settings: Settings) -> dict[str, Any]:
    """Return the values every family that takes them gets from the settings (seed, threads)."""
    return {"seed": settings.seed, "onnx_threads": settings.onnx_threads}


def _blend_with_fitted(
    params: dict[str, Any],
    splits: Splits,
    fitted: Mapping[str, ToxicityModel],
    tfidf_members: int,
    common: Mapping[str, Any],
) -> dict[str, Any]:
    """Return a blend's params whose members of this job are passed in fitted (`prefit`)."""
    if "estimators" in params:
        return params
    members = list(params.pop("members", None) or blend_members(fitted, splits, tfidf_members))
    member_params: Mapping[str, Mapping[str, Any]] = params.pop("member_params", None) or {}
    params["estimators"] = [
        (
            name,
            fitted[name]
            if name in fitted
            else create_model(name, common, **member_params.get(name, {})),
        )
        for name in members
    ]
    params["prefit"] = [name for name in members if name in fitted]
    return params


def fit_model(
    family: str,
    splits: Splits,
    params: Mapping[str, Any] | None = None,
    fitted: Mapping[str, ToxicityModel] | None = None,
    blend_tfidf_members: int = 3,
    common: Mapping[str, Any] | None = None,
    augmentations: Sequence[str] = (),
) -> tuple[ToxicityModel, float]:
    """Return a model of `family` fitted on the training split, and the seconds it took.

    `common` gives the values families take from the settings (`model_defaults`). A blend
    reuses the members in `fitted` (models of this job, fitted on the same split) and, unless
    its params name members, takes the transformer and the best `blend_tfidf_members` TF-IDF
    models among them. `augmentations` (`data.augmentation`) adds rows to the training split
    only.
    """
    params = dict(params or {})
    if family == BlendModel.family and fitted:
        params = _blend_with_fitted(params, splits, fitted, blend_tfidf_members, common or {})
    if family == CascadeModel.family and fitted:
        params = _cascade_with_fitted(params, splits, fitted)
    model = create_model(family, common, **params)
    started = time.perf_counter()
    seed = int((common or {}).get("seed", 0))
    train_texts, train_truth = augment_training(
        texts_of(splits.train), label_matrix(splits.train), augmentations, seed=seed
    )
    model.fit(
        train_texts,
        train_truth,
        validation=(texts_of(splits.validation), label_matrix(splits.validation)),
    )
    return model, time.perf_counter() - started


def evaluate_model(
    model: ToxicityModel, splits: Splits, title: str, *, seed: int, audit_rows: int | None
) -> Evaluation:
    """Return reports, test plots and the audit of a fitted model, with thresholds tuned on
    validation; `audit_rows` caps the test comments each obfuscation perturbs."""
    y_val = label_matrix(splits.validation)
    p_val = np.asarray(model.predict_proba(texts_of(splits.validation)), dtype=np.float64)
    thresholds = tune_thresholds(y_val, p_val)
    y_test = label_matrix(splits.test)
    p_test = model.predict_proba(texts_of(splits.test))
    test_report = evaluate(y_test, p_test, thresholds)
    figures = {
        "pr_curves_test.png": plot_pr_curves(
            y_test, p_test, thresholds, f"{title}: precision-recall on test"
        ),
        "f1_per_label_test.png": plot_f1_bars(test_report, f"{title}: F1 on test"),
    }
    if isinstance(model, CascadeModel):
        test_report["escalated_share"] = model.escalated_share(texts_of(splits.test))
        figures["escalation_curve.png"] = plot_escalation_curve(
            model.curve_,
            model.tail_share_,
            model.slow_validation_auc_,
            f"{title}: ROC-AUC against comments escalated",
        )
    audit = audit_model(
        model.predict_proba,
        texts_of(splits.test),
        y_test,
        thresholds,
        seed=seed,
        robustness_rows=audit_rows,
        probabilities=p_test,
    )
    figures["subgroup_aucs_test.png"] = plot_subgroup_aucs(
        audit.bias_test, f"{title}: identity subgroups, test split"
    )
    figures["subgroup_aucs_templates.png"] = plot_subgroup_aucs(
        audit.bias_templates, f"{title}: identity subgroups, templated sentences"
    )
    return Evaluation(
        validation=evaluate(y_val, p_val, thresholds),
        test=test_report,
        figures=figures,
        thresholds=np.asarray(thresholds, dtype=np.float64),
        validation_probabilities=p_val,
        test_probabilities=np.asarray(p_test, dtype=np.float64),
        audit=audit,
    )


def package_model(
    model: ToxicityModel, result: Evaluation, prepared: PreparedData, settings: Settings
) -> ModelPackage:
    """Return the package to register: the model, its tuned thresholds, its monitoring
    reference (from validation comments) and the hashes of the comments it was fitted and
    tuned on."""
    splits = prepared.splits
    train_texts, validation_texts = texts_of(splits.train), texts_of(splits.validation)
    reference = build_reference(
        validation_texts,
        result.validation_probabilities,
        result.thresholds,
        train_texts,
        rows=settings.reference_rows,
        vocabulary_size=settings.vocabulary_size,
        seed=settings.seed,
    )
    seen = text_hashes(train_texts + validation_texts)
    audit = result.audit.to_dict() if result.audit is not None else None
    return ModelPackage(model, result.thresholds, reference, seen, audit)


def register_model(
    family: str,
    model: ToxicityModel,
    fit_seconds: float,
    result: Evaluation,
    prepared: PreparedData,
    settings: Settings,
    params: Mapping[str, Any] | None = None,
) -> tuple[str, int]:
    """Log the model's package, reports and plots to MLflow and register it; return (run id,
    version)."""
    splits = prepared.splits
    package = package_model(model, result, prepared, settings)
    metrics = {
        **flat_metrics(result.validation, "val"),
        **flat_metrics(result.test, "test"),
        "fit_seconds": fit_seconds,
        **model.diagnostics(),
        **(result.audit.metrics() if result.audit is not None else {}),
    }
    run_params = {
        "family": family,
        **model.json_params(),
        **dict(params or {}),
        "seed": settings.seed,
        "validation_size": settings.validation_size,
        "test_size": settings.test_size,
        "train_rows": len(splits.train),
        "validation_rows": len(splits.validation),
        "test_rows": len(splits.test),
        "splits_fingerprint": splits.fingerprint,
    }
    return log_model_run(
        package,
        settings=settings,
        run_name=family,
        params=run_params,
        metrics=metrics,
        reports={
            "validation": result.validation,
            "test": result.test,
            "splits": splits.summary(),
            **({"audit": package.audit} if package.audit is not None else {}),
        },
        figures=result.figures,
        tables={f"audit_{name}": rows for name, rows in audit_tables(result.audit).items()}
        if result.audit is not None
        else None,
        dataset_source=prepared.dataset.source,
        dataset_fingerprint=prepared.dataset.fingerprint,
        splits_dir=prepared.splits_dir,
        tags={"splits_fingerprint": splits.fingerprint},
        dataset_rows=len(prepared.dataset.frame),
        demo_data=is_demo_corpus(prepared.dataset.source),
    )


def fit_step(
    family: str,
    prepared: PreparedData,
    params: Mapping[str, Any] | None,
    fitted: Mapping[str, ToxicityModel],
    settings: Settings,
) -> tuple[ToxicityModel, float]:
    """Return `fit_model` of a family with the settings' values (the default fit step)."""
    return fit_model(
        family,
        prepared.splits,
        params,
        fitted,
        settings.blend_tfidf_members,
        model_defaults(settings),
        settings.training_augmentations,
    )


def evaluate_step(
    family: str, model: ToxicityModel, prepared: PreparedData, settings: Settings
) -> Evaluation:
    """Return `evaluate_model` of a fitted model (the default evaluate step)."""
    return evaluate_model(
        model,
        prepared.splits,
        family,
        seed=settings.seed,
        audit_rows=settings.audit_robustness_rows,
    )
