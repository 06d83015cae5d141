"""The promotion step of training: compare a new model with the champion, then gate it.

The comparison scores both models (mean ROC-AUC) and audits both (`training.audit`) on the
same test comments, those the champion was neither trained nor tuned on; the audit's guarded
figures become the gate's guards, with the settings' margins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from toxiguard.data.splits import Splits
from toxiguard.data.validation import label_matrix, text_hashes
from toxiguard.models import ToxicityModel
from toxiguard.models.package import ModelPackage
from toxiguard.registry.promotion import Comparison, Guard, PromotionDecision, gate_promotion
from toxiguard.settings import Settings
from toxiguard.training.audit import GUARDED, AuditReport, audit_model
from toxiguard.training.evaluation import evaluate
from toxiguard.training.steps import Evaluation, PreparedData, texts_of


def head_to_head(
    model: ToxicityModel, result: Evaluation, splits: Splits, settings: Settings
) -> Callable[[ModelPackage], Comparison]:
    """Return the gate's comparison of this job's new model with a champion.

    Both are scored (mean ROC-AUC) and audited on the test comments the champion was neither
    trained nor tuned on; a champion saved without that record is scored on the whole test
    split. The audit's guarded figures come back as guards with the settings' margins.
    """
    texts = texts_of(splits.test)
    y_test = label_matrix(splits.test)

    def compare(champion: ModelPackage) -> Comparison:
        unseen = np.ones(len(texts), dtype=bool)
        if champion.seen_texts is not None:
            unseen = ~np.isin(text_hashes(texts), champion.seen_texts)
        rows, excluded = int(unseen.sum()), int(len(texts) - unseen.sum())
        if rows < settings.promotion_min_test_rows:
            return Comparison(None, None, rows, excluded)
        kept = [text for text, keep in zip(texts, unseen, strict=True) if keep]
        champion_probabilities = champion.predict_proba(kept)
        champion_report = evaluate(y_test[unseen], champion_probabilities, champion.thresholds)
        new_report = evaluate(
            y_test[unseen], result.test_probabilities[unseen], champion.thresholds
        )

        def audit(predict: Any, thresholds: Any, probabilities: Any) -> AuditReport:
            return audit_model(
                predict,
                kept,
                y_test[unseen],
                thresholds,
                seed=settings.seed,
                robustness_rows=settings.audit_robustness_rows,
                probabilities=probabilities,
            )

        # The new model's own audit ran on these very comments when the champion saw none.
        new_audit = result.audit
        if new_audit is None or excluded:
            new_audit = audit(
                model.predict_proba, result.thresholds, result.test_probabilities[unseen]
            )
        champion_audit = audit(champion.predict_proba, champion.thresholds, champion_probabilities)
        return Comparison(
            new_report["mean_roc_auc"],
            champion_report["mean_roc_auc"],
            rows,
            excluded,
            audit_guards(new_audit, champion_audit, settings),
        )

    return compare


def audit_guards(new: AuditReport, champion: AuditReport, settings: Settings) -> tuple[Guard, ...]:
    """Return a guard for each audit figure both reports measured, with its margin."""
    margins = {
        "bias": settings.promotion_bias_margin,
        "robustness": settings.promotion_robustness_margin,
    }
    new_values, champion_values = new.guarded(), champion.guarded()
    return tuple(
        Guard(metric, new_value, champion_value, margins[kind])
        for metric, kind in GUARDED.items()
        if (new_value := new_values[metric]) is not None
        and (champion_value := champion_values[metric]) is not None
    )


def gate_model(
    model: ToxicityModel,
    version: int,
    result: Evaluation,
    prepared: PreparedData,
    settings: Settings,
) -> PromotionDecision:
    """Return the gate's decision on a registered version: champion only if it beats the
    champion on this job's test comments the champion has not seen, and its audit is not worse
    there by more than the margins."""
    return gate_promotion(
        settings,
        version,
        result.test_mean_roc_auc,
        head_to_head(model, result, prepared.splits, settings),
    )


def gate_step(
    family: str,
    model: ToxicityModel,
    version: int,
    result: Evaluation,
    prepared: PreparedData,
    settings: Settings,
) -> PromotionDecision:
    """Return `gate_model` of a registered version (the default gate step)."""
    return gate_model(model, version, result, prepared, settings)
