"""The training pipeline as plain functions: validate, split, fit, evaluate, register, promote."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import numpy.typing as npt
from matplotlib.figure import Figure

from toxiguard.data.splits import Splits, save_splits, split_dataset
from toxiguard.data.validation import Dataset, label_matrix, load_dataset, text_hashes
from toxiguard.labels import TEXT_COLUMN
from toxiguard.models import ToxicityModel, create_model
from toxiguard.models.blend import BlendModel
from toxiguard.models.tfidf.linear import LinearTextModel
from toxiguard.registry.client import configure_mlflow
from toxiguard.registry.promotion import Comparison, PromotionDecision, gate_promotion
from toxiguard.registry.runs import log_model_run
from toxiguard.settings import Settings
from toxiguard.training.evaluation import (
    evaluate,
    flat_metrics,
    plot_f1_bars,
    plot_pr_curves,
    tune_thresholds,
)

logger = logging.getLogger(__name__)

DEFAULT_FAMILIES: tuple[str, ...] = ("tfidf-lr", "nbsvm", "tfidf-svm", "complement-nb")


@dataclass(frozen=True)
class PreparedData:
    """A validated dataset and its saved, fingerprinted split."""

    dataset: Dataset
    splits: Splits
    splits_dir: Path


@dataclass(frozen=True)
class Evaluation:
    """Validation and test reports of one fitted model, with thresholds tuned on validation."""

    validation: dict[str, Any]
    test: dict[str, Any]
    figures: dict[str, Figure]
    test_probabilities: npt.NDArray[np.float64]

    @property
    def test_mean_roc_auc(self) -> float:
        """Return the mean test ROC-AUC, the score that promotion compares."""
        return float(self.test["mean_roc_auc"])


@dataclass(frozen=True)
class ModelResult:
    """What training one model family produced: its run, version, scores and promotion decision."""

    family: str
    run_id: str
    version: int
    fit_seconds: float
    evaluation: Evaluation
    decision: PromotionDecision


@dataclass(frozen=True)
class TrainingResult:
    """The outcome of one training job over several model families."""

    source: str
    dataset_fingerprint: str
    splits_fingerprint: str
    splits_dir: Path
    models: list[ModelResult] = field(default_factory=list)

    @property
    def champion_version(self) -> int | None:
        """Return the champion after this job, if any model was promoted or one existed."""
        for result in reversed(self.models):
            if result.decision.promoted:
                return result.version
        return self.models[-1].decision.champion_before if self.models else None


def prepare_data(data_path: str | Path, settings: Settings) -> PreparedData:
    """Return the validated dataset and its seeded split, saved as parquet under the home."""
    dataset = load_dataset(data_path)
    for rule, count in dataset.dropped.items():
        logger.info("dropped %d rows by rule: %s", count, rule)
    splits = split_dataset(
        dataset.frame,
        seed=settings.seed,
        validation_size=settings.validation_size,
        test_size=settings.test_size,
    )
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


def blend_members(
    fitted: Mapping[str, ToxicityModel], splits: Splits, tfidf_members: int
) -> list[str]:
    """Return the default blend of a job: the transformer and the job's `tfidf_members` best
    TF-IDF models by validation mean ROC-AUC (`tfidf-lr` when the job fitted none)."""
    tfidf = {name: model for name, model in fitted.items() if isinstance(model, LinearTextModel)}
    if not tfidf:
        return ["transformer", "tfidf-lr"]
    texts, truth = texts_of(splits.validation), label_matrix(splits.validation)

    def validation_auc(name: str) -> float:
        model = tfidf[name]
        report = evaluate(truth, model.predict_proba(texts), model.thresholds)
        return float(report["mean_roc_auc"] or 0.0)

    best = sorted(sorted(tfidf), key=validation_auc, reverse=True)[:tfidf_members]
    logger.info("blend: members transformer and %s (best TF-IDF on validation)", ", ".join(best))
    return ["transformer", *best]


def fit_model(
    family: str,
    splits: Splits,
    params: Mapping[str, Any] | None = None,
    fitted: Mapping[str, ToxicityModel] | None = None,
    blend_tfidf_members: int = 3,
) -> tuple[ToxicityModel, float]:
    """Return a model of `family` fitted on the training split, and the seconds it took.

    A blend reuses the members in `fitted` (models of this job, fitted on the same split) and,
    unless its params name members, takes the transformer and the best `blend_tfidf_members`
    TF-IDF models among them.
    """
    params = dict(params or {})
    if family == BlendModel.family and "members" not in params and fitted:
        params["members"] = blend_members(fitted, splits, blend_tfidf_members)
    model = create_model(family, **params)
    if isinstance(model, BlendModel) and fitted:
        model.use_fitted(fitted)
    started = time.perf_counter()
    model.fit(
        texts_of(splits.train),
        label_matrix(splits.train),
        validation=(texts_of(splits.validation), label_matrix(splits.validation)),
    )
    return model, time.perf_counter() - started


def evaluate_model(model: ToxicityModel, splits: Splits, title: str) -> Evaluation:
    """Tune the model's thresholds on validation (in place); return reports and test plots."""
    y_val = label_matrix(splits.validation)
    p_val = model.predict_proba(texts_of(splits.validation))
    model.thresholds = tune_thresholds(y_val, p_val)
    y_test = label_matrix(splits.test)
    p_test = model.predict_proba(texts_of(splits.test))
    test_report = evaluate(y_test, p_test, model.thresholds)
    return Evaluation(
        validation=evaluate(y_val, p_val, model.thresholds),
        test=test_report,
        figures={
            "pr_curves_test.png": plot_pr_curves(
                y_test, p_test, model.thresholds, f"{title}: precision-recall on test"
            ),
            "f1_per_label_test.png": plot_f1_bars(test_report, f"{title}: F1 on test"),
        },
        test_probabilities=np.asarray(p_test, dtype=np.float64),
    )


def head_to_head(
    splits: Splits, result: Evaluation, min_rows: int
) -> Callable[[ToxicityModel], Comparison]:
    """Return the gate's comparison of this job's new model with a champion.

    Both are scored (mean ROC-AUC) on the test comments the champion was neither trained nor
    tuned on; a champion saved without that record is scored on the whole test split.
    """
    texts = texts_of(splits.test)
    y_test = label_matrix(splits.test)

    def compare(champion: ToxicityModel) -> Comparison:
        unseen = np.ones(len(texts), dtype=bool)
        if champion.seen_texts is not None:
            unseen = ~np.isin(text_hashes(texts), champion.seen_texts)
        rows, excluded = int(unseen.sum()), int(len(texts) - unseen.sum())
        if rows < min_rows:
            return Comparison(None, None, rows, excluded)
        kept = [text for text, keep in zip(texts, unseen, strict=True) if keep]
        champion_report = evaluate(
            y_test[unseen], champion.predict_proba(kept), champion.thresholds
        )
        new_report = evaluate(
            y_test[unseen], result.test_probabilities[unseen], champion.thresholds
        )
        return Comparison(
            new_report["mean_roc_auc"], champion_report["mean_roc_auc"], rows, excluded
        )

    return compare


def gate_model(
    version: int, result: Evaluation, prepared: PreparedData, settings: Settings
) -> PromotionDecision:
    """Return the gate's decision on a registered version: champion only if it beats the
    champion on this job's test comments the champion has not seen."""
    return gate_promotion(
        settings,
        version,
        result.test_mean_roc_auc,
        head_to_head(prepared.splits, result, settings.promotion_min_test_rows),
    )


def register_model(
    family: str,
    model: ToxicityModel,
    fit_seconds: float,
    result: Evaluation,
    prepared: PreparedData,
    settings: Settings,
    params: Mapping[str, Any] | None = None,
) -> tuple[str, int]:
    """Log the model, its reports and plots to MLflow and register it; return (run id, version)."""
    from toxiguard.monitoring.reference import reference_for_settings

    splits = prepared.splits
    if model.seen_texts is None:
        model.seen_texts = text_hashes(texts_of(splits.train) + texts_of(splits.validation))
    if model.reference is None:
        model.reference = reference_for_settings(
            model, texts_of(splits.validation), texts_of(splits.train), settings
        )
    metrics = {
        **flat_metrics(result.validation, "val"),
        **flat_metrics(result.test, "test"),
        "fit_seconds": fit_seconds,
        **model.diagnostics(),
    }
    run_params = {
        "family": family,
        **model.params,
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
        model,
        settings=settings,
        run_name=family,
        params=run_params,
        metrics=metrics,
        reports={"validation": result.validation, "test": result.test, "splits": splits.summary()},
        figures=result.figures,
        dataset_source=prepared.dataset.source,
        dataset_fingerprint=prepared.dataset.fingerprint,
        splits_dir=prepared.splits_dir,
        tags={"splits_fingerprint": splits.fingerprint},
    )


@contextlib.contextmanager
def family_run(family: str, settings: Settings) -> Iterator[None]:
    """Keep one MLflow run open for a family's fit, evaluation and registration, so that a
    model can log its training curves (e.g. the transformer's loss) into it while it fits."""
    configure_mlflow(settings)
    with mlflow.start_run(run_name=family):
        yield


def train_family(
    family: str,
    prepared: PreparedData,
    settings: Settings,
    params: Mapping[str, Any] | None = None,
    fitted: dict[str, ToxicityModel] | None = None,
) -> ModelResult:
    """Fit, evaluate, register and gate one model family; return what happened.

    When `fitted` is given, the fitted model is added to it for later blends of the same job.
    """
    logger.info("training %s on %d rows", family, len(prepared.splits.train))
    with family_run(family, settings):
        model, fit_seconds = fit_model(
            family, prepared.splits, params, fitted, settings.blend_tfidf_members
        )
        if fitted is not None:
            fitted[family] = model
        result = evaluate_model(model, prepared.splits, family)
        run_id, version = register_model(
            family, model, fit_seconds, result, prepared, settings, params
        )
    decision = gate_model(version, result, prepared, settings)
    logger.info("%s: version %d, %s", family, version, decision.reason)
    return ModelResult(family, run_id, version, fit_seconds, result, decision)


def training_order(families: Sequence[str]) -> list[str]:
    """Return the families in training order: blends last, to reuse this job's fitted members."""
    return sorted(families, key=lambda family: family == BlendModel.family)


def run_training(
    data_path: str | Path,
    families: Sequence[str] = DEFAULT_FAMILIES,
    settings: Settings | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
) -> TrainingResult:
    """Run the whole job for each family in turn; return every model's result."""
    from toxiguard.settings import get_settings

    settings = settings or get_settings()
    prepared = prepare_data(data_path, settings)
    fitted: dict[str, ToxicityModel] = {}
    results = [
        train_family(family, prepared, settings, (params or {}).get(family), fitted)
        for family in training_order(families)
    ]
    return TrainingResult(
        source=prepared.dataset.source,
        dataset_fingerprint=prepared.dataset.fingerprint,
        splits_fingerprint=prepared.splits.fingerprint,
        splits_dir=prepared.splits_dir,
        models=results,
    )


__all__ = [
    "DEFAULT_FAMILIES",
    "Evaluation",
    "ModelResult",
    "PreparedData",
    "TrainingResult",
    "evaluate_model",
    "fit_model",
    "gate_model",
    "head_to_head",
    "prepare_data",
    "register_model",
    "run_training",
    "train_family",
]
